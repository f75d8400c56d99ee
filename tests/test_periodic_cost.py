"""What the run does every second with many calls in flight stays cheap (issue 14 item 7):
the deadline watch walks a node's calls only once a deadline can have passed, a re-plan hashes
each number for the opposition list once per store, and a snapshot is written field by field
with the same content dataclasses.asdict gave."""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from typing import Any

from ivr.campaign import deadline
from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import InFlight, NodeState
from ivr.campaign.run_control import snapshot_dict
from ivr.campaign.state import NodeSnapshot, Snapshot
from ivr.store.base import utc
from ivr.store.sqlite import Store
from ivr.store.sqlite_history import hashes_of


class _Node:
    name, max_channels, up = "n1", 0, True


class _Walked(dict[str, InFlight]):
    """ns.calls, counting the walks over its values."""
    walks = 0

    def values(self) -> Any:
        self.walks += 1
        return super().values()


def _node(deadlines: list[float]) -> tuple[NodeState, _Walked]:
    ns = NodeState(_Node(), ManualClock())  # type: ignore[arg-type]
    ns.calls = calls = _Walked()
    for i, d in enumerate(deadlines):
        ns.add(InFlight(i, f"ch-{i}", f"+3319900{i:04d}", "n1", deadline=d))
    return ns, calls


def test_the_deadline_watch_walks_no_call_before_the_earliest_deadline() -> None:
    ns, calls = _node([100.0 + i for i in range(1000)])
    assert ns.earliest_deadline == 100.0
    for now in (1.0, 50.0, 99.9):
        assert deadline.overdue(ns, now) == []
    assert calls.walks == 0  # 1,000 in flight, nothing due: not one walk
    assert [f.call_id for f in deadline.overdue(ns, 101.5)] == [0, 1]


def test_a_late_call_left_unsettled_is_found_again_and_an_ended_one_moves_the_bound() -> None:
    ns, _ = _node([10.0, 20.0, 30.0])
    assert [f.call_id for f in deadline.overdue(ns, 10.0)] == [0]
    # Not settled this time (its node away): asked about again on the next look.
    assert [f.call_id for f in deadline.overdue(ns, 11.0)] == [0]
    del ns.calls["ch-0"]  # settled
    assert deadline.overdue(ns, 12.0) == [] and ns.earliest_deadline == 20.0
    del ns.calls["ch-1"]  # ended before its deadline: the bound is stale, one walk fixes it
    assert deadline.overdue(ns, 25.0) == [] and ns.earliest_deadline == 30.0
    ns.add(InFlight(9, "ch-9", "+33199000009", "n1", deadline=15.0))  # a shorter deadline
    assert [f.call_id for f in deadline.overdue(ns, 26.0)] == [9]
    ns.calls.clear()
    assert deadline.overdue(ns, 40.0) == [] and ns.earliest_deadline == math.inf


def test_each_number_is_hashed_once_per_store_and_key() -> None:
    store = Store.memory(optout_key=b"k1")
    numbers = [f"+3319900{i:04d}" for i in range(50)]
    seen: list[str] = []
    real = store.number_hash
    store.number_hash = lambda n: seen.append(n) or real(n)  # type: ignore[method-assign]
    first = hashes_of(store, numbers)
    assert first == {real(n): n for n in numbers}
    assert hashes_of(store, numbers) == first and len(seen) == 50  # the re-plan hashes none
    other = Store.memory(optout_key=b"k2")  # another store: its own key, its own hashes
    assert hashes_of(other, numbers) == {other.number_hash(n): n for n in numbers}
    store._key = b"k3"  # a new key: nothing kept under the old one is used
    assert hashes_of(store, numbers) == {real(n): n for n in numbers} and len(seen) == 100
    assert set(hashes_of(store, numbers)) != set(first)


def test_the_snapshot_written_is_what_dataclasses_asdict_gave() -> None:
    now = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=timezone.utc)
    snap = Snapshot(campaign="c", at=now, started_at=now, seq=7,
                    nodes=(NodeSnapshot("a", True, 3, 10), NodeSnapshot("b", False, 0, 0,
                                                                        "down", "k")),
                    in_flight=3, max_concurrent=5, outcomes=(("message_played", 3),
                                                             ("busy", 1)),
                    originated=9, rate_per_min=1.5, status="running", next_retry=now,
                    eta_s=12.5, waiting="2 retry wait")
    want = dataclasses.asdict(snap)
    for key, value in want.items():
        if isinstance(value, datetime):
            want[key] = utc(value)
    want |= {"outcomes": {"message_played": 3, "busy": 1}, "controller": "ctl",
             "nodes": [dataclasses.asdict(n) for n in snap.nodes]}
    got = snapshot_dict(snap, "ctl")
    assert got == want and list(got) == list(want)
    assert json.dumps(got) == json.dumps(want)


def test_a_number_not_asked_for_a_whole_generation_is_forgotten(monkeypatch) -> None:
    """An erased or finished number leaves the cache (and the process's memory) once a whole
    generation passed without it; one asked again in the next generation is not re-hashed."""
    from ivr.store import sqlite_history
    clock = [1000.0]
    monkeypatch.setattr(sqlite_history.time, "monotonic", lambda: clock[0])
    store = Store.memory(optout_key=b"k1")
    seen: list[str] = []
    real = store.number_hash
    store.number_hash = lambda n: seen.append(n) or real(n)  # type: ignore[method-assign]
    hashes_of(store, ["+33199000001", "+33199000002"])
    clock[0] += sqlite_history.HASH_CACHE_TURN_S  # a new generation: both still kept (older)
    hashes_of(store, ["+33199000001"])
    assert seen == ["+33199000001", "+33199000002"]  # promoted, not hashed again
    clock[0] += sqlite_history.HASH_CACHE_TURN_S  # +…02 was not asked for a whole generation
    kept = store.__dict__["_hash_cache"]
    hashes_of(store, ["+33199000001"])
    assert "+33199000002" not in kept[1] and "+33199000002" not in kept[2]
    assert seen == ["+33199000001", "+33199000002"]


def test_a_slow_count_never_lands_after_a_later_one() -> None:
    """PostgreSQL: a background count held up (a busy pool) must not overwrite the count the
    final snapshot read after it: reads are applied in the order they started."""
    import threading

    from ivr.campaign.state import RunState
    release, entered = threading.Event(), threading.Event()
    answers = iter([{"busy": 1}, {"busy": 1, "message_played": 5}])

    class SlowFirst:
        remote = True

        def outcome_counts(self, campaign: str, since_id: int,
                           controller: str | None = None) -> dict[str, int]:
            counts = next(answers)
            if "message_played" not in counts:  # the first read: held until released
                entered.set()
                release.wait(5)
            return counts
    state = RunState("c", SlowFirst(), ManualClock(), max_concurrent=1,  # type: ignore[arg-type]
                     since_id=0)
    older = threading.Thread(target=state._read_counts)
    older.start()
    assert entered.wait(5)
    state._read_counts()  # the final count, started later, lands first
    release.set()
    older.join(5)
    assert dict(state._counts) == {"busy": 1, "message_played": 5}
