"""The run loop end to end without root: the fake PBX over real AMI and FastAGI, the real
AmiNode, Dialer, IvrHandler and a store of each backend (conftest.backend); pacing and holds on a clock the test drives."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.campaign import run as campaign_run
from ivr.campaign import sending
from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.dialer import FAULT_HOLD_S
from ivr.campaign.state import RunState, Snapshot
from ivr.config import Window
from ivr.telephony.fake_pbx import answer, busy, failed

from conftest import Backend
from test_dialer import Rig, fiction, rig, store_settled

FAST = {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2}


async def drive(clock: ManualClock, done: asyncio.Future, step: float = 0.01) -> None:
    """Move the manual clock along while the run lives (about 5x real time)."""
    while not done.done():
        await store_settled()
        clock.advance(step)
        await asyncio.sleep(0.002)


def stamp_originates(r: Rig, on_originate: Callable[[int], None] = lambda n: None,
                     before: Callable[[int], None] = lambda n: None) -> list[float]:
    """The run clock's time of each Originate sent to the node; hooks before the n-th is sent
    and once the node answered it."""
    stamps: list[float] = []
    node = r.ctl.node
    send = node.originate

    async def timed(request: Any) -> None:
        stamps.append(r.clock.monotonic())
        before(len(stamps))
        try:
            await send(request)
        finally:  # once the node answered (or failed to)
            on_originate(len(stamps))
    node.originate = timed  # type: ignore[method-assign]
    return stamps


async def run_campaign(r: Rig, stop: asyncio.Event | None = None,
                       hard: asyncio.Event | None = None
                       ) -> tuple[campaign_run.RunReport, list[Snapshot], RunState]:
    state = RunState(r.cfg.campaign.name, r.store, r.clock,
                     max_concurrent=r.cfg.dialer.max_concurrent,
                     nodes=r.dialer.node_snapshots)
    snaps: list[Snapshot] = []
    state.subscribe(snaps.append)
    task = asyncio.ensure_future(campaign_run.run(
        r.cfg, r.store, r.dialer, r.clock, stop or asyncio.Event(), hard or asyncio.Event(),
        state))
    if isinstance(r.clock, ManualClock):
        await drive(r.clock, task)
    report = await asyncio.wait_for(task, 60)
    return report, snaps, state


def one_outcome_each(calls: list[dict[str, Any]]) -> None:
    assert all(c["outcome"] is not None for c in calls), calls
    assert len({c["channel_id"] for c in calls}) == len(calls)


def test_calls_per_second_is_honoured(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(8)]

    async def scenario() -> tuple[list[float], list[dict[str, Any]]]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=4) as r:
            stamps = stamp_originates(r)
            await run_campaign(r)
            return stamps, r.calls()
    stamps, calls = asyncio.run(scenario())
    assert len(stamps) == 8 and [c["outcome"] for c in calls] == ["failed"] * 8
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 0.25 - 1e-9  # never faster than 4 per second ...
    assert stamps[-1] - stamps[0] <= 7 * 0.25 + 0.5  # ... and not much slower


def test_max_concurrent_is_never_exceeded(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(8)]

    async def scenario() -> tuple[int, list[dict[str, Any]], list[Snapshot], Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.05) for n in numbers},
                       max_concurrent=3) as r:
            report, snaps, _ = await run_campaign(r)
            return r.pbx.max_live, r.calls(), snaps, report
    max_live, calls, snaps, report = asyncio.run(scenario())
    assert max_live == 3 and max(s.in_flight for s in snaps) <= 3
    assert report.originated == 8 and report.stopped_by == "finished"
    assert Counter(c["outcome"] for c in calls) == {"message_played": 8}


def test_retries_land_after_their_delay_and_stop_at_max_attempts(backend: Backend) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], Any]:
        async with rig(backend, {fiction(70): busy(), fiction(10): answer(["1"])},
                       clock=ManualClock(), delays=FAST) as r:
            report, _, _ = await run_campaign(r)
            return r.calls(), report
    calls, report = asyncio.run(scenario())
    busy_calls = [c for c in calls if c["number"] == fiction(70)]
    assert [c["outcome"] for c in busy_calls] == ["busy", "busy"]  # max_attempts 2
    assert busy_calls[0]["retry_at"] <= busy_calls[1]["started_at"]
    assert busy_calls[1]["retry_at"] is None
    assert report.originated == 3 and report.why.startswith("all done")


def test_a_node_shutting_down_holds_new_calls(backend: Backend) -> None:
    numbers = [fiction(10), fiction(11)]

    async def scenario() -> tuple[list[float], list[dict[str, Any]], list[Snapshot]]:
        async with rig(backend, {n: answer(["1"]) for n in numbers}, clock=ManualClock(),
                       delays={"busy": 1, "no_answer": 1, "congestion": 30}) as r:
            r.pbx.shutting_down = True

            def after(n: int) -> None:  # only the first Originate meets the stopping PBX
                r.pbx.shutting_down = False
            stamps = stamp_originates(r, after)
            stop = asyncio.Event()
            r.clock.call_later(FAULT_HOLD_S + 3, stop.set)  # before the error's retry
            _, snaps, _ = await run_campaign(r, stop)
            return stamps, r.calls(), snaps
    stamps, calls, snaps = asyncio.run(scenario())
    assert len(stamps) == 2  # the refused one, then the next contact after the hold
    assert stamps[1] - stamps[0] >= FAULT_HOLD_S
    assert [c["outcome"] for c in calls] == ["error", "message_played"]
    assert any(s.status == "holding" and "holding" in s.holding for s in snaps)


def test_first_stop_places_no_new_call_and_lets_calls_finish(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> tuple[Any, list[dict[str, Any]], int, list[Snapshot]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.3) for n in numbers},
                       max_concurrent=2) as r:
            stop = asyncio.Event()
            stamp_originates(r, lambda n: stop.set() if n == 2 else None)
            report, snaps, _ = await run_campaign(r, stop)
            return report, r.calls(), len(r.pbx.originates), snaps
    report, calls, originates, snaps = asyncio.run(scenario())
    assert originates == 2 and report.originated == 2 and report.stopped_by == "operator"
    assert [c["outcome"] for c in calls] == ["message_played"] * 2  # finished, not cut
    assert any(s.stopping for s in snaps) and snaps[-1].stopped_by == "operator"


def test_second_stop_hangs_up_the_calls_in_flight(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(4)]

    async def scenario() -> tuple[list[dict[str, Any]], float, int]:
        async with rig(backend, {n: answer(["1"], prompt_s=20) for n in numbers},
                       max_concurrent=2) as r:
            stop, hard = asyncio.Event(), asyncio.Event()

            def on_call(n: int) -> None:
                if n == 2:
                    stop.set()
                    asyncio.get_running_loop().call_later(0.5, hard.set)
            stamp_originates(r, on_call)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await run_campaign(r, stop, hard)
            return r.calls(), loop.time() - t0, len(r.pbx.live)
    calls, elapsed, live = asyncio.run(scenario())
    assert elapsed < 10  # the 20-second prompts were cut
    assert len(calls) == 2 and live == 0
    one_outcome_each(calls)


def test_a_pbx_that_drops_mid_run_gives_every_attempt_one_outcome(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(10)]

    async def scenario() -> tuple[list[dict[str, Any]], Any, int, list[Snapshot], RunState,
                                  list[tuple[str, int]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.1) for n in numbers},
                       max_concurrent=3, calls_per_second=20, delays=FAST) as r:
            # The link drops as the 4th Originate goes out: its fate is unknown.
            stamp_originates(r, before=lambda n: r.pbx.drop() if n == 4 else None)
            sent: list[tuple[str, int]] = []  # (channel id, logins so far), in sending order
            node, send = r.ctl.node, r.ctl.node.originate

            async def noted(request: Any) -> None:
                sent.append((request.channel_id, r.pbx.logins))
                await send(request)
            node.originate = noted  # type: ignore[method-assign]
            logins = r.pbx.logins
            report, snaps, state = await run_campaign(r)
            return r.calls(), report, r.pbx.logins - logins, snaps, state, sent
    calls, report, relogins, snaps, state, sent = asyncio.run(scenario())
    assert relogins >= 1  # the node came back and the run carried on
    one_outcome_each(calls)
    last = {}
    for c in calls:
        last[c["number"]] = c["outcome"]
    assert set(last) == set(numbers) and set(last.values()) == {"message_played"}
    final = snaps[-1]
    unconfirmed = [c for c in calls if c["stage"] == "reconciled"]
    # Never re-sent: reconciled as `error`, then retried. Unconfirmed are the 4th and those
    # sent after it on the dying link (Originates overlap: on a loaded machine the next slot
    # may come before the drop is seen), none before it, none after the reconnect.
    ids = [c["channel_id"] for c in unconfirmed]
    assert ids and ids == [cid for cid, _ in sent[3:3 + len(ids)]]
    assert {n for _, n in sent[3:3 + len(ids)]} == {sent[3][1]}
    assert all(c["outcome"] == "error" and c["retry_at"] for c in unconfirmed)
    assert final.finished and final.originated == report.originated
    assert report.originated == len(calls) - len(unconfirmed)
    assert final.counts == Counter(c["outcome"] for c in calls)
    assert final.counts == state.store.outcome_counts("utest", since_id=state.since_id)


def test_snapshots_while_running(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> tuple[list[Snapshot], list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.4) for n in numbers},
                       max_concurrent=2, calls_per_second=2) as r:
            _, snaps, _ = await run_campaign(r)
            return snaps, r.calls()
    snaps, calls = asyncio.run(scenario())
    assert snaps[0].seq == 1 and snaps[-1].stopped and snaps[-1].finished
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(snaps, snaps[1:])]
    # At least once a second: exact on a ManualClock (test_run_state.py); here on the real
    # clock, with slack for a loaded machine.
    assert max(gaps) <= 1.5
    assert max(s.in_flight for s in snaps) == 2
    assert snaps[-1].in_flight == 0
    assert snaps[-1].counts == {"message_played": 6} == Counter(c["outcome"] for c in calls)
    assert any(s.rate_per_min > 0 for s in snaps)
    assert snaps[-1].why.startswith("all done")


@pytest.mark.parametrize("clock", [Clock(), ManualClock()], ids=["real", "manual"])
def test_nobody_to_call_ends_at_once_and_says_why(tmp_path: Path, clock: Clock) -> None:
    async def scenario() -> Any:
        async with rig(tmp_path, {}, clock=clock, numbers=[]) as r:
            report, snaps, _ = await run_campaign(r)
            return report, snaps
    report, snaps = asyncio.run(scenario())
    assert report.originated == 0 and "no contacts" in report.why
    assert snaps[-1].why == report.why


QUIET_S = 1.0  # no Originate for this long: the run is waiting on those in the air


def test_originates_overlap_up_to_the_window_within_max_concurrent(backend: Backend) -> None:
    """A slow PBX answer to each Originate does not serialize the run: several are awaited at
    once, never more than SEND_WINDOW, never beyond max_concurrent, the first one alone."""
    numbers = [fiction(i) for i in range(80)]

    async def scenario() -> tuple[list[int], int, Any, list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.05) for n in numbers},
                       max_concurrent=70, calls_per_second=200) as r:
            node, send, waiting = r.ctl.node, r.ctl.node.originate, [0]
            seen: list[int] = []
            loop, last, full = asyncio.get_running_loop(), [0.0], [False]

            async def slow(request: Any) -> None:
                """A busy PBX's Response: held until the run sends no more (QUIET s since the
                last one) or SEND_WINDOW await at once. Waiting for quiet rather than a fixed
                delay: on a loaded machine (a PostgreSQL claim in a thread) 0.3 s let 24 of
                32 leave in CI, and the window was never full."""
                waiting[0] += 1
                seen.append(waiting[0])
                last[0] = loop.time()
                full[0] = full[0] or waiting[0] == sending.SEND_WINDOW
                while not full[0] and loop.time() - last[0] < QUIET_S:
                    await asyncio.sleep(0.02)
                try:
                    await send(request)
                finally:
                    waiting[0] -= 1
            node.originate = slow  # type: ignore[method-assign]
            report, _, _ = await run_campaign(r)
            return seen, r.pbx.max_live, report, r.calls()
    seen, max_live, report, calls = asyncio.run(scenario())
    assert seen[0] == 1 and seen[1] == 1  # the first alone; the second after its success
    assert max(seen) == sending.SEND_WINDOW
    assert max_live <= 70 and report.originated == 80
    assert Counter(c["outcome"] for c in calls) == {"message_played": 80}


def test_a_call_settled_with_a_retry_does_not_re_plan_before_its_delay(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each re-plan reads every pending contact: one per call settled with a retry, while
    many are in flight, would cost the calls in flight for each call. The run re-plans when
    the earliest retry comes due (or every call has ended), not when it is planned."""
    busy_numbers = [fiction(i) for i in range(10)]
    callees = {n: busy(delay_s=0.1 * (i + 1)) for i, n in enumerate(busy_numbers)}
    callees[fiction(50)] = answer(["1"], prompt_s=1.0)  # in flight throughout
    plans: list[float] = []
    real_plan = campaign_run.plan

    def counted(*args: Any) -> Any:
        plans.append(time.monotonic())  # PostgreSQL plans in a worker thread: no loop there
        return real_plan(*args)
    monkeypatch.setattr(campaign_run, "plan", counted)

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        async with rig(backend, callees, max_concurrent=20, ring_timeout_s=3,
                       delays={"busy": 3.0, "no_answer": 3.0, "congestion": 3.0}) as r:
            t0 = time.monotonic()
            await run_campaign(r)
            return r.calls(), t0
    calls, t0 = asyncio.run(scenario())
    first = [c for c in calls if c["number"] in busy_numbers and c["attempt"] == 1]
    assert len(first) == 10 and {c["outcome"] for c in first} == {"busy"}
    # The plan, the one after dialling it; then the ten busy settles (over 1 s) re-plan
    # nothing: the first retry is due 3 s after the first of them.
    assert len([t for t in plans if t - t0 < 3.0]) == 2
    for n in busy_numbers:
        a, b = [c for c in calls if c["number"] == n]
        assert b["outcome"] == "busy" and a["retry_at"] <= b["started_at"]


def slow_originates(r: Rig, delay: Callable[[int], float]) -> list[float]:
    """Each Originate reaches the node `delay(n)` seconds after it was sent (a busy PBX);
    returns the run clock's time at which each one was sent."""
    stamps: list[float] = []
    node, send = r.ctl.node, r.ctl.node.originate

    async def slow(request: Any) -> None:
        stamps.append(r.clock.monotonic())
        await asyncio.sleep(delay(len(stamps)))
        await send(request)
    node.originate = slow  # type: ignore[method-assign]
    return stamps


def test_a_hard_stop_waits_for_originates_on_their_way_then_hangs_up_every_call(
        backend: Backend) -> None:
    """Originates overlap: at a hard stop some have no channel yet. Hung up before their
    channel existed, they would ring and play after the stop."""
    numbers = [fiction(i) for i in range(6)]
    stop, hard = asyncio.Event(), asyncio.Event()

    async def scenario() -> tuple[list[dict[str, Any]], int, float, int]:
        async with rig(backend, {n: answer(["1"], prompt_s=30) for n in numbers},
                       max_concurrent=6, calls_per_second=50) as r:
            stamps = slow_originates(r, lambda n: 0.8)
            loop = asyncio.get_running_loop()

            async def cut() -> None:  # once two Originates are on their way, not yet answered
                while len(stamps) < 3:
                    await asyncio.sleep(0.01)
                stop.set()
                hard.set()
            cutter = asyncio.ensure_future(cut())
            t0 = loop.time()
            await run_campaign(r, stop, hard)
            await cutter
            return r.calls(), len(r.pbx.live), loop.time() - t0, len(stamps)
    calls, live, elapsed, sent = asyncio.run(scenario())
    assert sent == 3 and live == 0 and elapsed < 15  # the 30-second prompts were cut
    assert len(calls) == 3 and all(c["outcome"] is not None for c in calls), calls


def test_an_unexpected_originate_error_fails_the_run(backend: Backend) -> None:
    """Not a PbxError (a bug, a closed transport): the run fails loudly, as it did when it
    awaited each Originate itself, instead of carrying on around a flight nobody settles."""
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> int:
        async with rig(backend, {n: answer(["1"]) for n in numbers}) as r:
            sent = [0]
            send = r.ctl.node.originate

            async def broken(request: Any) -> None:
                sent[0] += 1
                if sent[0] == 2:
                    raise RuntimeError("boom")
                await send(request)
            r.ctl.node.originate = broken  # type: ignore[method-assign]
            with pytest.raises(RuntimeError, match="boom"):
                await run_campaign(r)
            return sent[0]
    sent = asyncio.run(scenario())
    assert 2 <= sent < 6  # it stopped dialling


def test_pacing_holds_after_a_long_wait_for_the_window(backend: Backend) -> None:
    """After a wait longer than the pacing interval (here the first Originate's slow
    Response), the next calls still leave one interval apart, not back to back."""
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> list[float]:
        async with rig(backend, {n: failed(1) for n in numbers}, calls_per_second=5) as r:
            stamps = slow_originates(r, lambda n: 1.0 if n == 1 else 0.0)
            await run_campaign(r)
            return stamps
    stamps = asyncio.run(scenario())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(stamps) == 6 and gaps[0] >= 1.0
    assert min(gaps) >= 0.18, gaps  # 5 a second: 0.2 s apart


def slow_first_claim(r: Rig, seconds: float) -> list[float]:
    """The first claim takes `seconds` more (e.g. a slow store); the run clock's time at
    which each claim returned."""
    place, placed = r.dialer.place, []

    async def slow_first(contact: dict[str, Any]) -> Any:
        got = await place(contact)
        placed.append(r.clock.monotonic())
        if len(placed) == 1:
            await r.clock.sleep(seconds)
        return got
    r.dialer.place = slow_first  # type: ignore[method-assign]
    return placed


def test_a_hard_stop_wakes_the_pacing_wait_of_a_claimed_call_which_is_then_not_sent(
        backend: Backend) -> None:
    """A claim that took long (here the first, 40 s) makes the next Originate wait one
    interval from its departure after its own claim. A hard stop during that wait ends it at
    once: that call is not sent (nothing rings after a hard stop), its attempt is withdrawn
    (no row: the contact keeps its attempts and stays due), and the run ends without waiting
    out the interval."""
    numbers = [fiction(i) for i in range(3)]
    stop, hard = asyncio.Event(), asyncio.Event()

    async def scenario() -> tuple[list[float], float, float, list[dict[str, Any]]]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=1 / 40) as r:
            stamps = stamp_originates(r)
            placed = slow_first_claim(r, 40)

            async def cut() -> float:  # 5 s into the second call's wait for its slot
                while len(placed) < 2:
                    await asyncio.sleep(0.005)
                while r.clock.monotonic() < placed[1] + 5:
                    await asyncio.sleep(0.002)
                stop.set()
                hard.set()
                return r.clock.monotonic()
            cutter = asyncio.ensure_future(cut())
            await run_campaign(r, stop, hard)
            return stamps, await cutter, r.clock.monotonic(), r.calls()
    stamps, cut_at, ended_at, calls = asyncio.run(scenario())
    assert len(stamps) == 1  # the second call never left
    assert ended_at - cut_at < 20, (cut_at, ended_at)  # not the rest of the 40-s interval
    assert len(calls) == 1 and calls[0]["outcome"] == "failed", calls


def test_a_claimed_call_whose_window_closes_during_its_pacing_wait_is_not_sent(
        backend: Backend) -> None:
    """The window is 11:00-11:01 (Paris) and the run starts at 11:00:45, one call every
    10 s. The first claim takes 8 s, so the second call, claimed at 11:00:55 inside the
    window, waits for its slot until 11:01:03, past the window's end. It is not sent: its
    attempt is withdrawn (the contact keeps its attempts and stays pending, due when the
    window reopens). Before, the claim's verdict alone let it ring outside the window."""
    numbers = [fiction(i) for i in range(2)]
    stop = asyncio.Event()
    start = datetime(2026, 12, 1, 10, 0, 45, tzinfo=timezone.utc)  # a Tuesday, 11:00:45 Paris

    async def scenario() -> tuple[list[float], list[float], list[int], list[dict[str, Any]]]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(start),
                       calls_per_second=0.1) as r:
            r.cfg.schedule.demo_any_hour = False
            r.cfg.schedule.windows = [Window(days="mon-sun", hours=["11:00-11:01"])]
            stamps = stamp_originates(r)
            placed, unsent = slow_first_claim(r, 8), []
            withdraw = r.dialer.unsent

            def not_sent(call_id: int, send: Any) -> None:
                unsent.append(call_id)
                withdraw(call_id, send)
                stop.set()
            r.dialer.unsent = not_sent  # type: ignore[method-assign]
            await run_campaign(r, stop)
            await r.settled()
            return stamps, placed, unsent, r.calls()
    stamps, placed, unsent, calls = asyncio.run(scenario())
    assert len(placed) == 2 and placed[1] < 15  # the second claim: inside the window
    assert len(stamps) == 1 and len(unsent) == 1, (stamps, unsent)  # not sent after it
    assert [c["number"] for c in calls] == [numbers[0]]  # its attempt withdrawn: no row

