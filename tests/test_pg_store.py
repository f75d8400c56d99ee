"""The PostgreSQL store against a real PostgreSQL (the `pg_url` fixture): the claim with
FOR UPDATE SKIP LOCKED from several connections, the rules across two stores, migrations, the
open rules (password, key), and the same rows as SQLite for the same calls."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr.errors import StoreError
from ivr.store import CallResult, History, Store, utc
from ivr.store.pg import PgStore
from ivr.store.pg_cluster import PgCluster, port_free
from ivr.store.pg_schema import MIGRATIONS
from ivr.store.safe_writes import SafeWriter

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
KEY = b"k"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = "ok"


def rules(cap: int = 2, cooldown: timedelta = timedelta(days=30)) -> Any:
    """A judge like planning.judge's order: opposition, in flight, cooldown, cap."""
    def judge(h: History) -> Verdict:
        if h.opted_out:
            return Verdict(False, "opted_out")
        if h.in_flight:
            return Verdict(False, "in_flight")
        if h.last_refusal is not None and h.last_refusal > T0 - cooldown:
            return Verdict(False, "refusal_cooldown")
        if len(h.attempts) >= cap:
            return Verdict(False, "attempt_cap")
        return Verdict(True)
    return judge


def add(store: Any, number: str, campaigns: tuple[str, ...] = ("c1",)) -> dict[str, Any]:
    """One contact bound to `campaigns`, written the same way on both backends."""
    pg = isinstance(store, PgStore)
    ins = ("INSERT INTO contacts (number, source, created_at, updated_at) "
           "VALUES (%s, 'list', %s, %s) RETURNING *" if pg else
           "INSERT INTO contacts (number, source, created_at, updated_at) "
           "VALUES (?, 'list', ?, ?) RETURNING *")
    row = store.q(ins, (number, utc(T0), utc(T0)))[0]
    for c in campaigns:
        store.q("INSERT INTO campaign_contacts (contact_id, campaign, source, status, bound_at) "
                + ("VALUES (%s, %s, 'list', 'pending', %s) RETURNING contact_id" if pg else
                   "VALUES (?, ?, 'list', 'pending', ?) RETURNING contact_id"),
                (row["id"], c, utc(T0)))
    return row


def claim(store: Any, contact: dict[str, Any], judge: Any = None, now: datetime = T0,
          campaign: str = "c1") -> Any:
    return store.claim_attempt(contact, campaign=campaign, caller_id="+33162000000",
                               node="n1", now=now, attempts_since=now - timedelta(days=30),
                               refusals_since=now - timedelta(days=30),
                               judge=judge or rules(), token_hash="th")


@pytest.fixture
def pg(pg_url: str) -> Any:
    s = PgStore.open(pg_url, optout_key=KEY)
    yield s
    s.close()


# -- opening ----------------------------------------------------------------------------------
def test_a_password_in_the_url_is_refused_and_never_shown() -> None:
    with pytest.raises(StoreError) as err:
        PgStore.open("postgresql://ivr:s3cret@127.0.0.1:1/ivr", optout_key=KEY)
    msg = str(err.value)
    assert "s3cret" not in msg and "IVR_STORE_PASSWORD" in msg and "\n" not in msg


@pytest.mark.parametrize("url", ["host=127.0.0.1 password=s3cret dbname=ivr",
                                 "postgresql://ivr@127.0.0.1/ivr?password=s3cret",
                                 # libpq decodes the key: found in review, echoed whole
                                 "postgresql://ivr@127.0.0.1/ivr?pass%77ord=s3cret",
                                 "postgresql://ivr@127.0.0.1/ivr?password=s3cret%20s3cret",
                                 "postgresql://ivr:s3cret%40x@127.0.0.1/ivr"])
def test_a_password_in_a_dsn_or_a_query_is_refused_and_never_shown(url: str) -> None:
    with pytest.raises(StoreError) as err:
        PgStore.open(url, optout_key=KEY)
    assert "s3cret" not in str(err.value) and "holds a password" in str(err.value)


@pytest.mark.parametrize("url", ["postgresql://ivr@127.0.0.1/ivr?pass%77ord=s3cret",
                                 "postgresql://ivr@127.0.0.1/ivr?%70assword=s3cret"])
def test_the_config_refuses_a_percent_encoded_password_key(url: str) -> None:
    from conftest import make_config
    from ivr.errors import ConfigError
    with pytest.raises(ConfigError, match="store.url holds a password") as err:
        make_config(store={"url": url})
    assert "s3cret" not in str(err.value)


def test_without_an_opposition_key_it_refuses_naming_both_sources(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    with pytest.raises(StoreError) as err:
        PgStore.open("postgresql://ivr@127.0.0.1:1/ivr")
    assert "IVR_OPTOUT_KEY" in str(err.value) and "store.optout_key_file" in str(err.value)


def test_a_server_that_is_not_there_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_STORE_PASSWORD", "pw-not-shown")
    with pytest.raises(StoreError) as err:
        PgStore.open("postgresql://ivr@127.0.0.1:1/ivr", optout_key=KEY, connect_timeout_s=2)
    msg = str(err.value)
    assert msg.startswith("cannot open the store postgresql://ivr@127.0.0.1:1/ivr")
    assert "\n" not in msg and "pw-not-shown" not in msg


def test_postgresql_is_remote_and_shares_work_sqlite_neither() -> None:
    assert (PgStore.remote, PgStore.shares_work, Store.remote, Store.shares_work) == \
        (True, True, False, False)


def test_migrations_are_idempotent_and_race_free(pg_url: str) -> None:
    opened: list[PgStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PgStore.open(pg_url, optout_key=KEY))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    again = PgStore.open(pg_url, optout_key=KEY)
    assert again.version == len(MIGRATIONS) >= 8
    assert [r["version"] for r in again.q("SELECT version FROM schema_version ORDER BY 1")] == \
        list(range(1, len(MIGRATIONS) + 1))
    for s in [*opened, again]:
        s.close()


# -- the claim --------------------------------------------------------------------------------
def test_a_number_locked_by_another_controller_is_refused_without_waiting(pg_url: str) -> None:
    a, b = PgStore.open(pg_url, optout_key=KEY), PgStore.open(pg_url, optout_key=KEY)
    c = add(a, "+33199000001")
    got: list[Any] = []
    with a.transaction():  # controller A is claiming this number right now
        a.q("SELECT id FROM contacts WHERE id = %s FOR UPDATE", (c["id"],))
        t = time.monotonic()
        worker = threading.Thread(target=lambda: got.append(claim(b, c)))
        worker.start()
        worker.join(timeout=3)
        waited = time.monotonic() - t
        finished = not worker.is_alive()
    worker.join()
    assert finished and waited < 1.0  # refused at once, not after A's transaction
    assert got[0].call is None and got[0].decision.reason == "in_flight"
    assert b.q("SELECT COUNT(*) AS n FROM calls") == [{"n": 0}]
    assert claim(b, c).call is not None  # once released, the number can be claimed
    a.close()
    b.close()


def test_two_controllers_claiming_the_same_numbers_never_get_two_attempts(pg_url: str) -> None:
    stores = [PgStore.open(pg_url, optout_key=KEY) for _ in range(2)]
    contacts = [add(stores[0], f"+331990001{i:02d}") for i in range(40)]
    won: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def controller(k: int) -> None:
        start.wait()
        for _ in range(3):  # each tries every number three times
            for c in contacts:
                got = claim(stores[k], c)
                if got.call is not None:
                    won[k].append(c["id"])
    threads = [threading.Thread(target=controller, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_number = stores[0].q("SELECT contact_id, COUNT(*) AS n FROM calls GROUP BY contact_id")
    assert len(per_number) == 40 and {r["n"] for r in per_number} == {1}
    assert sorted(won[0] + won[1]) == sorted(c["id"] for c in contacts)
    for s in stores:
        s.close()


def test_cap_and_refusal_cooldown_hold_across_two_stores(pg: PgStore, pg_url: str) -> None:
    other = PgStore.open(pg_url, optout_key=KEY)
    c, r = add(pg, "+33199000201"), add(pg, "+33199000202", ("c1", "c2"))
    first = claim(pg, c).call
    pg.finish_unanswered(first["id"], "no_answer", "19", T0, T0)  # a retry planned: pending
    second = claim(other, c, now=T0 + timedelta(minutes=1)).call
    assert second is not None and second["attempt"] == 2
    other.finish_unanswered(second["id"], "no_answer", "19", T0 + timedelta(minutes=2), T0)
    third = claim(pg, c, now=T0 + timedelta(minutes=3))
    assert third.call is None and third.decision.reason == "attempt_cap"
    call = claim(pg, r).call
    pg.finish_answered(call["id"], CallResult(outcome="declined", stage="ask", keys="2",
                                              heard={}, choice="refusal", choice_key="2"),
                       T0 + timedelta(seconds=30))
    # The refusal holds for every campaign: the other store, another campaign, a day later.
    again = claim(other, r, now=T0 + timedelta(days=1), campaign="c2")
    assert again.call is None and again.decision.reason == "refusal_cooldown"
    other.close()


def test_an_opposition_recorded_by_one_store_stops_the_other_at_once(pg: PgStore,
                                                                      pg_url: str) -> None:
    other = PgStore.open(pg_url, optout_key=KEY)
    c = add(pg, "+33199000301")
    pg.add_optout("+33199000301", "web", T0)
    got = claim(other, c)
    assert got.call is None and got.decision.reason == "opted_out"
    assert other.is_opted_out("+33199000301")
    other.close()


def test_a_nested_transaction_fails_alone(pg: PgStore) -> None:
    with pg.transaction():
        pg.audit("kept", None, {}, T0)
        with pytest.raises(RuntimeError):
            with pg.transaction():
                pg.audit("undone", None, {}, T0)
                raise RuntimeError("inner")
    assert [r["action"] for r in pg.q("SELECT action FROM audit")] == ["kept"]


# -- the same rows as SQLite ------------------------------------------------------------------
def _sequence(s: Any) -> dict[str, Any]:
    """The same calls, in the same order, on either backend; everything they leave behind."""
    a, b, c = (add(s, f"+3319900090{i}", ("c1", "c2")) for i in range(3))
    t = [T0 + timedelta(seconds=i) for i in range(20)]
    first = [claim(s, x, now=t[0]).call for x in (a, b, c)]
    refused = claim(s, a, now=t[1])
    s.record_answer(first[0]["id"], t[2])
    s.mark_answered(first[0]["id"], t[3])
    s.record_answer(first[0]["id"], t[1])  # an earlier report wins
    s.finish_answered(first[0]["id"], CallResult(
        outcome="message_played", stage="done", keys="11", heard={"intro": "aa", "ask": "bb"},
        choice="consent", choice_key="1", answered_prompt="ask", answered_sha256="bb",
        slot="evening", amd_status="HUMAN"), t[4])
    again = s.finish_answered(first[0]["id"], CallResult("declined", "ask", "2", {}), t[5])
    s.finish_unanswered(first[1]["id"], "no_answer", "19", t[5], t[9], stage="ring")
    s.set_hangup_cause(first[1]["id"], "18")
    s.set_hangup_cause_by_channel(first[1]["channel_id"], "21", "c1")
    s.set_hangup_cause_by_channel(first[1]["channel_id"], "99", "c2")  # not that campaign's
    s.finish_answered(first[2]["id"], CallResult(
        outcome="opted_out", stage="ask", keys="9", heard={}, choice="optout", choice_key="9"),
        t[6])
    second = claim(s, b, now=t[10], campaign="c2").call
    s.audit("note", "+33199000900", {"é": 1}, t[7], actor="alice")
    hist = s.history(["+33199000900", "+33199000901", "+33199000902", "+33199000999"],
                     T0 - timedelta(days=1), T0 - timedelta(days=1), "c1")
    tables = {name: s.q(f"SELECT * FROM {name} ORDER BY 1, 2") for name in  # noqa: S608
              ("contacts", "campaign_contacts", "calls", "consents", "optouts", "audit")}
    for row in tables["calls"]:
        row["channel_id"] = row["channel_id"][:-8]  # its last 8 characters are random
    return {"tables": tables, "refused": refused.decision, "again": again, "history": hist,
            "second": second["attempt"], "open": [r["id"] for r in s.open_calls()],
            "open_c2": [r["id"] for r in s.open_calls(node="n1", campaign="c2")],
            "counts": s.outcome_counts("c1"), "all_counts": s.outcome_counts(None, 1),
            "last": s.last_call_id(), "last_c1": s.last_call_id("c1"),
            "last_c9": s.last_call_id("c9"), "opted": s.is_opted_out("+33199000902"),
            "hash": s.number_hash("+33199000902")}


def test_both_backends_leave_equal_rows_for_the_same_calls(pg: PgStore) -> None:
    lite, post = _sequence(Store.memory(KEY)), _sequence(pg)
    for name, rows in lite["tables"].items():
        assert post["tables"][name] == rows, name
    assert {k: v for k, v in post.items() if k != "tables"} == \
        {k: v for k, v in lite.items() if k != "tables"}
    assert lite["tables"]["calls"][1]["hangup_cause"] == "21" and lite["again"] is None
    # a campaign's last call id (a run counts from it): c1's three, then c2's one
    assert (lite["last"], lite["last_c1"], lite["last_c9"]) == (4, 3, 0)


# -- PostgreSQL stopped mid-run ---------------------------------------------------------------
@pytest.fixture
def own_cluster(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Any:
    """A cluster of this test's own (it is stopped and started again: the session's must not
    be), on a free port; `pg_cluster` first, so that binaries are known to be there."""
    base = Path(tempfile.mkdtemp(prefix="ivr-pg-stop-"))
    port = next(p for p in range(pg_cluster.port + 100, pg_cluster.port + 200) if port_free(p))
    cluster = PgCluster(base, port, fast=True)
    cluster.up()
    monkeypatch.setenv("PGPASSFILE", str(cluster.pgpass_file))
    yield cluster
    cluster.down()
    shutil.rmtree(base, ignore_errors=True)


def test_postgresql_stopped_queues_the_writes_then_they_all_land(own_cluster: Any) -> None:
    s = PgStore.open(own_cluster.url, optout_key=KEY, connect_timeout_s=2)
    calls = [claim(s, add(s, f"+3319900110{i}")).call for i in range(3)]

    async def go() -> tuple[str, float]:
        w = SafeWriter(s.transaction, retry_s=0.2)
        assert w.remote
        gaps, last, running = [0.0], time.monotonic(), True

        async def ticker() -> None:  # how long the loop ever went without a turn
            nonlocal last
            while running:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()
        tick = asyncio.create_task(ticker())
        await asyncio.to_thread(own_cluster.down)
        for k, c in enumerate(calls):
            w.write(lambda c=c, k=k: s.finish_unanswered(c["id"], "busy", "17",
                                                         T0 + timedelta(seconds=k), None))
            await asyncio.sleep(0)
        await w.settled()
        problem = w.problem
        assert problem and len(w.pending) == 3  # queued, in order, nothing lost
        await asyncio.sleep(1.0)
        assert w.problem and len(w.pending) == 3
        await asyncio.to_thread(own_cluster.up)
        await asyncio.wait_for(w.drained.wait(), 60)
        running = False
        await tick
        return problem, max(gaps)
    problem, worst_gap = asyncio.run(go())
    assert "\n" not in problem
    # The loop kept turning while the store was away: a store call on the loop would have
    # stopped it for the pool's 2 s wait at least.
    assert worst_gap < 1.5
    rows = s.q("SELECT id, outcome, ended_at FROM calls ORDER BY id")
    assert [(r["outcome"], r["ended_at"]) for r in rows] == \
        [("busy", utc(T0 + timedelta(seconds=k))) for k in range(3)]
    s.close()


def test_no_password_available_says_where_ivr_takes_it_from(
        pg_url: str, pg_cluster: PgCluster, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq's "fe_sendauth: no password supplied" alone named no fix; the password itself is
    never printed."""
    for name in ("PGPASSFILE", "IVR_STORE_PASSWORD", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass either
    with pytest.raises(StoreError) as err:
        PgStore.open(pg_url, optout_key=KEY)
    message = str(err.value)
    assert message.startswith("cannot open the store postgresql://") and "\n" not in message
    assert "no password supplied: set IVR_STORE_PASSWORD (or PGPASSFILE / ~/.pgpass" in message
    assert pg_cluster.password() not in message


def test_every_connection_detects_a_dead_network_within_seconds(pg: Any) -> None:
    """The pool's connections had no TCP keepalives nor user timeout (the heartbeat's alone
    had them): over a network dropping packets without a reset, a statement held a store
    thread for the kernel's retransmissions, ~15 min, and a stop waited that long. Read back
    from a live pooled connection: the server sees the settings libpq applied."""
    with pg.pool.connection() as conn:
        info = conn.info.get_parameters()
        dsn = conn.info.dsn
    assert "keepalives=1" in dsn and "tcp_user_timeout=20000" in dsn, dsn
    assert "keepalives_idle=10" in dsn and "keepalives_count=3" in dsn
    assert info.get("application_name") == "ivr"
