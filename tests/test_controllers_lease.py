"""Several controllers: each registers and heartbeats (PostgreSQL) or holds the run lock
(SQLite); the open attempts of a controller that stopped, or whose lease expired, are found by
another (orphaned_calls), never its own. PostgreSQL through the `pg_url` fixture."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, attempt
from ivr.errors import StoreError
from ivr.store import Store, utc
from ivr.store.base import RunOwner
from ivr.store.pg import PgStore
from test_pg_store import add, claim

KEY = b"k"
NOW = datetime.now(timezone.utc)  # heartbeats are written on the real clock


def owner(pid: int) -> RunOwner:
    return RunOwner(pid, "host-a", NOW)


def test_a_postgresql_controller_registers_heartbeats_and_marks_its_stop(pg_url: str) -> None:
    s = PgStore.open(pg_url, optout_key=KEY, lease_s=0.3)  # a beat every 0.1 s
    c = add(s, "+33199000401")
    with s.hold_run(owner(11), "c1"):
        me = s.controller_id
        assert me is not None and len(me) == 16
        row = s.controllers("c1")[0]
        assert (row["id"], row["pid"], row["host"], row["lease_s"], row["stopped_at"]) == \
            (me, 11, "host-a", 0.3, None)
        first = row["heartbeat_at"]
        time.sleep(0.5)
        assert s.controllers("c1")[0]["heartbeat_at"] > first  # the thread beats
        assert claim(s, c).call["controller"] == me
    assert s.controller_id is None
    assert s.controllers("c1")[0]["stopped_at"] is not None
    assert s.controllers("other") == []
    s.close()


def test_a_second_postgresql_controller_shares_the_campaign(pg_url: str) -> None:
    a, b = (PgStore.open(pg_url, optout_key=KEY) for _ in range(2))
    with a.hold_run(owner(1), "c1"), b.hold_run(owner(2), "c1"):  # not refused
        assert a.controller_id != b.controller_id
        assert {r["pid"] for r in a.controllers("c1") if r["stopped_at"] is None} == {1, 2}
    a.close()
    b.close()


def test_a_lease_is_judged_on_the_servers_clock_not_on_the_controllers(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller whose machine's clock is an hour behind is alive to the others: its
    heartbeat is the server's time (found in review: each host wrote and compared its own
    wall clock, so a host a lease ahead settled a live controller's calls as orphaned)."""
    from ivr.store import pg_controllers

    class HourBehind(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) - timedelta(hours=1)
    a, b = (PgStore.open(pg_url, optout_key=KEY, lease_s=3) for _ in range(2))
    with b.hold_run(owner(2), "c1"):
        monkeypatch.setattr(pg_controllers, "datetime", HourBehind)  # A's machine
        with a.hold_run(owner(1), "c1"):
            call = claim(a, add(a, "+33199000510")).call
            beats = a._beat.beats
            while a._beat.beats < beats + 1:  # one heartbeat written on A's clock
                time.sleep(0.05)
            monkeypatch.undo()  # B's machine: the right time
            row = next(r for r in a.controllers("c1") if r["id"] == a.controller_id)
            server = a.q("SELECT clock_timestamp() AS t")[0]["t"]
            assert abs((datetime.fromisoformat(row["heartbeat_at"].replace("Z", "+00:00"))
                        - server).total_seconds()) < 5
            assert b.orphaned_calls("c1", datetime.now(timezone.utc)) == []  # A is alive
            assert call["id"] not in [r["id"] for r in
                                      b.open_calls(campaign="c1", controller=b.controller_id)]
            later = datetime.now(timezone.utc) + timedelta(seconds=4)  # past A's 3 s lease
            assert [r["id"] for r in b.orphaned_calls("c1", later)] == [call["id"]]
    a.close()
    b.close()


def test_a_lease_over_30_seconds_is_refused() -> None:
    with pytest.raises(StoreError, match="at most 30 s"):
        PgStore.open("postgresql://ivr@127.0.0.1:1/ivr", optout_key=KEY, lease_s=31)


def test_postgresql_orphans_after_the_lease_or_the_stop_never_ones_own(pg_url: str) -> None:
    a, b = (PgStore.open(pg_url, optout_key=KEY) for _ in range(2))
    c1, c2, c3 = (add(a, f"+3319900050{i}", ("c1", "c2")) for i in range(3))
    with b.hold_run(owner(2), "c1"):
        with a.hold_run(owner(1), "c1"):
            open_ids = [claim(a, c1).call["id"], claim(a, c2).call["id"]]
            ended = claim(a, c3).call["id"]
            a.finish_unanswered(ended, "busy", "17", NOW, None)
            assert b.orphaned_calls("c1", datetime.now(timezone.utc)) == []  # A is alive
            later = datetime.now(timezone.utc) + timedelta(seconds=16)  # past A's 15 s lease
            assert [r["id"] for r in b.orphaned_calls("c1", later)] == open_ids
            assert b.orphaned_calls("c2", later) == []  # another campaign's are not its
            assert a.orphaned_calls("c1", later) == []  # never its own
            mine = claim(b, add(a, "+33199000599")).call["id"]
        gone = b.orphaned_calls("c1", datetime.now(timezone.utc))  # A stopped: at once
        assert [r["id"] for r in gone] == open_ids and mine not in [r["id"] for r in gone]
        assert all(r["controller"] == gone[0]["controller"] != b.controller_id for r in gone)
    a.close()
    b.close()


def test_sqlite_holds_one_run_per_campaign_and_writes_its_controller(tmp_path: Path) -> None:
    s, t = (Store.open(tmp_path / "ivr.db", optout_key=KEY) for _ in range(2))
    c = add_contact(s, "+33199000601", at=NOW)
    with s.hold_run(owner(1), "c1"):
        with pytest.raises(StoreError, match="in use by"):
            with t.hold_run(owner(2), "c1"):
                pass
        assert attempt(s, c, "c1", "+33162000000", NOW)["controller"] == s.controller_id
        assert s.controllers("c1")[0]["id"] == s.controller_id
    assert s.controller_id is None and s.controllers("c1")[0]["stopped_at"] is not None


def test_sqlite_orphans_of_a_killed_run_are_found_by_the_next(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "ivr.db", optout_key=KEY)
    c = add_contact(s, "+33199000701", at=NOW)
    # A run SIGKILLed a moment ago: registered, heartbeat fresh, never stopped.
    s.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, heartbeat_at, "
                 "lease_s) VALUES ('dead', 'c1', 'h', 9, ?, ?, 15)", (utc(NOW), utc(NOW)))
    left = attempt(s, c, "c1", "+33162000000", NOW)
    s.db.execute("UPDATE calls SET controller = 'dead' WHERE id = ?", (left["id"],))
    assert s.orphaned_calls("c1", NOW) == []  # not holding the campaign: its lease runs
    assert [r["id"] for r in s.orphaned_calls("c1", NOW + timedelta(seconds=16))] == \
        [left["id"]]
    with s.hold_run(owner(1), "c1"):  # the lock proves no other run of c1 is alive
        assert [r["id"] for r in s.orphaned_calls("c1", NOW)] == [left["id"]]


def test_two_controllers_on_one_campaign_each_count_the_calls_they_placed(pg_url: str) -> None:
    """Each run's snapshot counts the outcomes of its own calls, as it counts `originated`:
    counting every controller's since its start showed more calls done than it had placed."""
    from ivr.campaign.clock import ManualClock
    from ivr.campaign.state import RunState, Snapshot
    a, b = (PgStore.open(pg_url, optout_key=KEY) for _ in range(2))
    c = [add(a, f"+3319900050{i}") for i in range(3)]

    async def runs() -> tuple[Snapshot, ...]:
        run = {s: RunState("c1", s, ManualClock(), max_concurrent=2) for s in (a, b)}
        for store, contact, outcome in ((a, c[0], "busy"), (b, c[1], "no_answer"),
                                        (b, c[2], "busy")):
            call = claim(store, contact).call
            store.finish_unanswered(call["id"], outcome, "17", NOW, None)
            run[store].called()
        for state in run.values():  # as the run ends: the counts read, then the last snapshot
            await state.count_now()
        return tuple(run[s].finish("finished", "") for s in (a, b))
    with a.hold_run(owner(1), "c1"), b.hold_run(owner(2), "c1"):
        snap_a, snap_b = asyncio.run(runs())
    assert (snap_a.counts, snap_a.originated) == ({"busy": 1}, 1)
    assert (snap_b.counts, snap_b.originated) == ({"no_answer": 1, "busy": 1}, 2)
    assert a.outcome_counts("c1") == {"busy": 2, "no_answer": 1}  # the campaign's, for `report`
    a.close()
    b.close()
