"""RunState and its snapshots, on a real SQLite store and a clock the test drives."""
from __future__ import annotations

import asyncio
import dataclasses
import io
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from ivr import config
from ivr.campaign import planning
from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.progress import Progress
from ivr.campaign.state import NodeSnapshot, RunState, Snapshot
from ivr.store.sqlite import Store, utc

CLOCK_START = ManualClock().start  # Tuesday 2026-12-01 10:00 UTC: inside the calling window


def cfg() -> config.Config:
    return config.from_dict({"campaign": {"name": "c1", "caller_id": "+33162000000"},
                             "retry": {"max_attempts": 3},
                             "schedule": {"demo_any_hour": True}})


def store_with(tmp_path: Path, n: int) -> Store:
    s = Store.open(tmp_path / "ivr.db")
    for i in range(n):
        s.db.execute("INSERT INTO contacts (number, source, basis, created_at, updated_at) "
                     "VALUES (?, 'list', 'consent', ?, ?)",
                     (f"+331990000{i:02d}", utc(CLOCK_START), utc(CLOCK_START)))
    s.bind_contacts([f"+331990000{i:02d}" for i in range(n)], campaign="c1", source="list",
                    basis="consent", acquired_on=None, now=CLOCK_START)
    return s


def attempt(s: Store, number: str, outcome: str, clock: ManualClock, campaign: str = "c1"
            ) -> None:
    c = cfg() if campaign == "c1" else dataclasses.replace(
        cfg(), campaign=dataclasses.replace(cfg().campaign, name=campaign))
    contact = s.one("SELECT * FROM contacts WHERE number = ?", (number,))
    claim = planning.claim(c, s, contact, "pbx", clock.now())
    assert claim.call is not None, claim.decision
    s.finish_unanswered(int(claim.call["id"]), outcome, None, clock.now(), None)


def nodes(in_flight: int = 0) -> tuple[NodeSnapshot, ...]:
    return (NodeSnapshot("pbx", True, in_flight, 0),)


def test_counts_are_this_runs_attempts_of_this_campaign(tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 4)
    attempt(s, "+33199000000", "busy", clock)  # before the run: not counted
    state = RunState("c1", s, clock, max_concurrent=3, nodes=lambda: nodes(1))
    attempt(s, "+33199000001", "busy", clock)
    attempt(s, "+33199000002", "message_played", clock)
    attempt(s, "+33199000003", "busy", clock, campaign="other")  # another campaign
    snap = state.publish()
    assert snap.counts == {"message_played": 1, "busy": 1} == \
        s.outcome_counts("c1", since_id=state.since_id)
    assert [o for o, _ in snap.outcomes] == ["message_played", "busy"]  # table order
    assert snap.done == 2 and snap.in_flight == 1 and snap.max_concurrent == 3
    assert snap.nodes == nodes(1)


def test_snapshots_are_immutable(tmp_path: Path) -> None:
    state = RunState("c1", store_with(tmp_path, 0), ManualClock(), max_concurrent=1)
    snap = state.publish()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.in_flight = 3  # type: ignore[misc]
    assert isinstance(snap.outcomes, tuple)


def test_published_at_least_every_second_and_rate_limited_on_change(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Snapshot], int, int]:
        clock = ManualClock()
        state = RunState("c1", store_with(tmp_path, 0), clock, max_concurrent=1,
                         every_s=1.0, min_gap_s=0.2)
        seen: list[Snapshot] = []
        state.subscribe(seen.append)
        state.start()  # one at once
        await clock.run_for(3.0, step=0.05)
        periodic = len(seen)
        for _ in range(100):  # a burst of changes in one instant
            state.changed()
        burst = len(seen) - periodic
        await clock.run_for(0.25, step=0.05)
        state.close()
        return seen, periodic, burst
    seen, periodic, burst = asyncio.run(scenario())
    assert periodic >= 4  # the first, then one per simulated second
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(seen, seen[1:periodic])]
    assert max(gaps) <= 1.0 + 1e-9
    assert burst <= 1  # the burst coalesced ...
    assert len(seen) - periodic >= 1  # ... and was still published
    assert [s.seq for s in seen] == sorted(s.seq for s in seen)


def test_rate_and_eta_follow_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 12)
    state = RunState("c1", s, clock, max_concurrent=5, rate_window_s=60)
    for _ in range(6):  # 6 calls in 30 s: 12 calls/min
        clock.advance(5)
        state.called()
    state.planned(planning.plan(cfg(), s, clock.now()))
    snap = state.publish()
    assert snap.originated == 6
    assert snap.rate_per_min == pytest.approx(12.0)
    assert snap.remaining == 12
    assert snap.eta_s == pytest.approx(12 / 12 * 60)
    clock.advance(120)  # nothing placed for two minutes: the window is empty
    assert state.publish().rate_per_min == 0 and state.last.eta_s is None


def test_why_paused_holding_waiting_and_the_final_snapshot(tmp_path: Path) -> None:
    clock = ManualClock(CLOCK_START.replace(hour=20))  # 21:00 Paris: outside the window
    s = Store.open(tmp_path / "ivr.db")
    s.db.execute("INSERT INTO contacts (number, source, basis, created_at, updated_at) "
                 "VALUES ('+33162000010', 'list', 'consent', ?, ?)",
                 (utc(clock.now()), utc(clock.now())))
    s.bind_contacts(["+33162000010"], campaign="c1", source="list", basis="consent",
                    acquired_on=None, now=clock.now())
    state = RunState("c1", s, clock, max_concurrent=1, nodes=nodes)
    state.planned(planning.plan(cfg(), s, clock.now()))
    assert state.publish().status == "waiting" and "outside window" in state.last.waiting
    state.set(holding="node pbx down")
    assert (state.publish().status, state.last.holding) == ("holding", "node pbx down")
    state.set(paused="store unavailable: database is locked")
    assert state.publish().status == "paused"
    state.set(paused="", holding="", stopping=True)
    assert state.publish().status == "stopping" and state.last.stopping
    final = state.finish("operator", "nobody can be called now")
    assert final.stopped and not final.finished and final.status == "stopped"
    assert final.last_problem == "store unavailable: database is locked"
    assert final.why == "nobody can be called now" and final.stopped_by == "operator"


def test_next_retry_comes_from_the_plan(tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 1)
    contact = s.one("SELECT * FROM contacts")
    call = planning.claim(cfg(), s, contact, "pbx", clock.now()).call
    retry = clock.now() + timedelta(seconds=600)
    s.finish_unanswered(int(call["id"]), "busy", "17", clock.now(), retry)
    state = RunState("c1", s, clock, max_concurrent=1)
    state.planned(planning.plan(cfg(), s, clock.now()))
    snap = state.publish()
    assert snap.next_retry == retry and snap.remaining == 1


def test_async_iterator_ends_with_the_final_snapshot(tmp_path: Path) -> None:
    async def scenario() -> list[Snapshot]:
        clock = ManualClock()
        state = RunState("c1", store_with(tmp_path, 0), clock, max_concurrent=1)
        got: list[Snapshot] = []

        async def reader() -> None:
            async for snap in state.snapshots():
                got.append(snap)
        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        state.publish()
        state.called()
        clock.advance(1)
        state.finish("finished", "all done")
        await asyncio.wait_for(task, 1)
        return got
    got = asyncio.run(scenario())
    assert got[-1].finished and got[-1].why == "all done"
    assert got[-1].originated == 1 and len(got) >= 2


def test_a_failing_subscriber_does_not_stop_the_others(tmp_path: Path) -> None:
    state = RunState("c1", store_with(tmp_path, 0), ManualClock(), max_concurrent=1)
    seen: list[Snapshot] = []
    state.subscribe(lambda s: 1 / 0)
    unsubscribe = state.subscribe(seen.append)
    state.publish()
    unsubscribe()
    state.publish()
    assert len(seen) == 1


def test_manual_clock_drives_timers_and_waits() -> None:
    async def scenario() -> list[str]:
        clock = ManualClock()
        fired: list[str] = []
        clock.call_later(2, fired.append, "b")
        clock.call_later(1, fired.append, "a")
        clock.call_later(3, fired.append, "never").cancel()
        waiter = asyncio.create_task(clock.wait(asyncio.Event(), timeout=5))
        await clock.run_for(4.0, step=0.5)
        fired.append(f"waiting={not waiter.done()}")
        await clock.run_for(1.5, step=0.5)
        fired.append(f"done={waiter.done()}")
        return fired
    assert asyncio.run(scenario()) == ["a", "b", "waiting=True", "done=True"]


def test_real_clock_is_utc_and_monotonic() -> None:
    clock = Clock()
    assert clock.now().utcoffset() == timedelta(0)
    a = clock.monotonic()
    assert clock.monotonic() >= a


def test_progress_prints_plain_lines_from_snapshots_only(tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 2)
    state = RunState("c1", s, clock, max_concurrent=2, nodes=lambda: nodes(1))
    out = io.StringIO()
    with Progress(Console(file=out, force_terminal=False, width=200), every_s=2.0) as progress:
        state.subscribe(progress.show)
        state.publish()                       # the first: printed
        clock.advance(1.0)
        state.publish()                       # 1 s later: not yet
        attempt(s, "+33199000000", "busy", clock)
        clock.advance(1.5)
        state.publish()                       # 2.5 s after the last line: printed
        final = state.finish("finished", "all done")  # the final one: printed at once
    lines = out.getvalue().splitlines()
    assert lines == ["progress: in_flight=1 done=0",
                     "progress: in_flight=1 done=1 busy=1",
                     "progress: in_flight=1 done=1 busy=1"]
    assert progress.last is final


def test_an_unchanged_plain_line_is_printed_once_a_minute(tmp_path: Path) -> None:
    """Found in a hunt: a standby printed the same line every 2 s (~40,000 a day in
    journald)."""
    clock = ManualClock()
    s = store_with(tmp_path, 2)
    state = RunState("c1", s, clock, max_concurrent=2, nodes=lambda: nodes(1))
    out = io.StringIO()
    with Progress(Console(file=out, force_terminal=False, width=200), every_s=2.0) as progress:
        state.subscribe(progress.show)
        for _ in range(66):  # 0 to 130 s, nothing changes
            state.publish()
            clock.advance(2.0)
        attempt(s, "+33199000000", "busy", clock)
        state.publish()  # a change: at once
    lines = out.getvalue().splitlines()
    assert lines == ["progress: in_flight=1 done=0"] * 3 + \
        ["progress: in_flight=1 done=1 busy=1"], lines  # at 0, 60 and 120 s, then the change


def test_outcome_counts_read_at_most_once_per_second_and_exact_at_the_end(
        tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 3)
    reads: list[int] = []
    count = s.outcome_counts

    def counted(*args: object, **kwargs: object) -> dict[str, int]:
        reads.append(1)
        return count(*args, **kwargs)  # type: ignore[arg-type]
    s.outcome_counts = counted  # type: ignore[method-assign]
    state = RunState("c1", s, clock, max_concurrent=3, count_every_s=1.0)
    assert state.publish().counts == {} and len(reads) == 1
    attempt(s, "+33199000001", "busy", clock)
    for _ in range(50):  # many snapshots within the second: the last counts read
        clock.advance(0.01)
        assert state.publish().counts == {}
    assert len(reads) == 1
    clock.advance(1.0)
    assert state.publish().counts == {"busy": 1} and len(reads) == 2
    attempt(s, "+33199000002", "message_played", clock)
    final = state.finish("finished", "nobody left")  # within the second, yet exact
    assert final.counts == {"busy": 1, "message_played": 1} and len(reads) == 3


def test_a_count_that_costs_more_waits_longer_and_the_end_is_still_exact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: the count walks every attempt of the run, on the event loop on SQLite,
    once a second night and day (157 ms at 300,000 attempts). A count that took 0.2 s makes
    the next wait COUNT_SHARE (20) times that: 4 s."""
    from ivr.campaign import state as state_mod
    clock = ManualClock()
    s = store_with(tmp_path, 3)
    reads: list[int] = []
    count = s.outcome_counts
    spent = [0.0]

    def slow(*args: object, **kwargs: object) -> dict[str, int]:
        reads.append(1)
        spent[0] += 0.2  # what the query costs, on the counter the state reads
        return count(*args, **kwargs)  # type: ignore[arg-type]
    s.outcome_counts = slow  # type: ignore[method-assign]
    monkeypatch.setattr(state_mod.time, "perf_counter", lambda: spent[0])
    state = RunState("c1", s, clock, max_concurrent=3, count_every_s=1.0)
    state.publish()
    assert len(reads) == 1
    attempt(s, "+33199000001", "busy", clock)
    clock.advance(3.9)
    assert state.publish().counts == {} and len(reads) == 1  # 4 s after a 0.2 s count
    clock.advance(0.2)
    assert state.publish().counts == {"busy": 1} and len(reads) == 2
    attempt(s, "+33199000002", "message_played", clock)
    assert state.finish("finished", "nobody left").counts == {"busy": 1, "message_played": 1}


def test_the_count_gap_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in the last review: one count that waited on a lock (60 s, say) set a 20-minute
    gap, and the live counts froze with the store healthy again. At most COUNT_GAP_MAX_S."""
    from ivr.campaign import state as state_mod
    clock = ManualClock()
    s = store_with(tmp_path, 3)
    spent, reads = [0.0], []
    count = s.outcome_counts

    def stalled(*args: object, **kwargs: object) -> dict[str, int]:
        reads.append(1)
        spent[0] += 60.0
        return count(*args, **kwargs)  # type: ignore[arg-type]
    s.outcome_counts = stalled  # type: ignore[method-assign]
    monkeypatch.setattr(state_mod.time, "perf_counter", lambda: spent[0])
    state = RunState("c1", s, clock, max_concurrent=3, count_every_s=1.0)
    state.publish()
    clock.advance(state_mod.COUNT_GAP_MAX_S)
    state.publish()
    assert len(reads) == 2 and state_mod.COUNT_GAP_MAX_S == 30.0
