"""The console's control of a run (ivr/campaign/run_control.py) on the real run loop: the fake
PBX over real AMI and FastAGI, the real dialer and a store of each backend (conftest.backend);
the console is a second connection to that store writing `run_control`, as `ivr web` does."""
from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr.campaign import run as campaign_run
from ivr.campaign import run_control
from ivr.campaign.clock import ManualClock
from ivr.campaign.state import RunState, Snapshot
from ivr.config import Config
from ivr.errors import ConfigError
from ivr.store.sqlite import Store
from ivr.telephony.fake_pbx import answer, failed

from conftest import Backend
from test_dialer import Rig, fiction, make_cfg, rig, store_settled
from test_run_loop import drive, stamp_originates

CAMPAIGN = "utest"  # make_cfg's


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_control, "POLL_S", 0.1)


def console(backend: Backend) -> Store:
    """The web console's own connection to the store."""
    return backend.open()


def say(backend: Backend, by: str = "alice", **control: Any) -> None:
    console(backend).set_run_control(CAMPAIGN, by=by, now=datetime.now(timezone.utc),
                                      **control)


async def start_run(r: Rig, *, standby: bool = False, stop: asyncio.Event | None = None
                    ) -> tuple[asyncio.Future, list[Snapshot]]:
    state = RunState(CAMPAIGN, r.store, r.clock, max_concurrent=r.cfg.dialer.max_concurrent,
                     nodes=r.dialer.node_snapshots)
    snaps: list[Snapshot] = []
    state.subscribe(snaps.append)
    task = asyncio.ensure_future(campaign_run.run(
        r.cfg, r.store, r.dialer, r.clock, stop or asyncio.Event(), asyncio.Event(), state,
        standby=standby))
    if isinstance(r.clock, ManualClock):
        asyncio.ensure_future(drive(r.clock, task))
    return task, snaps


def test_pause_stops_new_calls_calls_in_flight_finish_and_resume_carries_on(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.6) for n in numbers},
                       max_concurrent=2) as r:
            stamp_originates(r, lambda n: say(backend, desired="paused") if n == 2 else None)
            task, snaps = await start_run(r)
            await r.until(lambda: len(r.pbx.originates) == 2)
            await r.until(lambda: not r.dialer.in_flight(), timeout=10)  # they finish
            during = [c["outcome"] for c in r.calls()]
            await asyncio.sleep(1.0)  # paused: nothing more is dialled
            held = len(r.pbx.originates)
            paused_rows = console(backend).snapshots(CAMPAIGN)
            say(backend, by="bob", desired="running")
            report = await asyncio.wait_for(task, 30)
            return {"during": during, "held": held, "rows": paused_rows, "report": report,
                    "calls": r.calls(), "snaps": snaps}
    got = asyncio.run(scenario())
    assert got["during"] == ["message_played"] * 2 and got["held"] == 2
    assert any(s.status == "paused" and s.console == run_control.PAUSED for s in got["snaps"])
    published = got["rows"][0]["snapshot"]
    assert (published["status"], published["console"]) == ("paused", run_control.PAUSED)
    assert got["report"].stopped_by == "finished" and got["report"].originated == 6
    assert Counter(c["outcome"] for c in got["calls"]) == {"message_played": 6}


def test_stop_from_the_console_lets_calls_in_flight_finish(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> tuple[Any, list[dict[str, Any]], int, list[Snapshot]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.5) for n in numbers},
                       max_concurrent=2) as r:
            stamp_originates(r, lambda n: say(backend, desired="stopped") if n == 2 else None)
            task, snaps = await start_run(r)
            report = await asyncio.wait_for(task, 30)
            return report, r.calls(), len(r.pbx.originates), snaps
    report, calls, originates, snaps = asyncio.run(scenario())
    assert originates == 2 and report.stopped_by == "operator"
    assert [c["outcome"] for c in calls] == ["message_played"] * 2  # finished, not cut
    assert any(s.stopping for s in snaps)


def test_hard_stop_from_the_console_hangs_up_every_call(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(4)]

    async def scenario() -> tuple[list[dict[str, Any]], float, int, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=20) for n in numbers},
                       max_concurrent=2) as r:
            stamp_originates(r, lambda n: say(backend, desired="hard_stop") if n == 2
                             else None)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            task, _ = await start_run(r)
            report = await asyncio.wait_for(task, 30)
            return r.calls(), loop.time() - t0, len(r.pbx.live), report
    calls, elapsed, live, report = asyncio.run(scenario())
    assert elapsed < 10 and live == 0  # the 20-second prompts were cut
    assert len(calls) == 2 and all(c["outcome"] is not None for c in calls)
    assert report.stopped_by == "operator"


def test_calls_per_second_from_the_console_takes_effect_at_the_next_tick(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(12)]

    async def scenario() -> list[float]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=10) as r:
            stamps = stamp_originates(
                r, lambda n: say(backend, calls_per_second=2.0) if n == 3 else None)
            task, _ = await start_run(r)
            await asyncio.wait_for(task, 60)
            return stamps
    stamps = asyncio.run(scenario())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(stamps) == 12
    assert max(gaps[:2]) < 0.2  # 10 per second before
    assert min(gaps[5:]) >= 0.5 - 1e-9  # 2 per second once read (within a tick or two)


def test_max_concurrent_from_the_console_caps_the_calls_in_flight(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(6)]
    say(backend, max_concurrent=1)  # set before the run: the CLI start keeps it

    async def scenario() -> tuple[int, list[Snapshot], list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       max_concurrent=3) as r:
            task, snaps = await start_run(r)
            await asyncio.wait_for(task, 30)
            return r.pbx.max_live, snaps, r.calls()
    max_live, snaps, calls = asyncio.run(scenario())
    assert max_live == 1 and snaps[-1].max_concurrent == 1
    assert Counter(c["outcome"] for c in calls) == {"message_played": 6}


def test_pacing_out_of_the_configs_bounds_is_refused_naming_the_field(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_concurrent=3, calls_per_second=5)
    run_control.check_pacing(cfg, 3, 5.0)
    run_control.check_pacing(cfg, 1, 0.1)
    run_control.check_pacing(cfg, None, None)
    run_control.check_pacing(cfg, None, 1 / 60)  # one call a minute: the slowest pace
    for n, r, field in ((4, None, "max_concurrent"), (0, None, "max_concurrent"),
                        (None, 5.5, "calls_per_second"), (None, 0.0, "calls_per_second"),
                        (None, 1e-300, "calls_per_second"), (None, 5e-324, "calls_per_second"),
                        (None, 0.01, "calls_per_second"), (None, math.nan, "calls_per_second")):
        with pytest.raises(ConfigError) as exc:
            run_control.check_pacing(cfg, n, r)
        message = str(exc.value)
        assert message.startswith(field + " is ") and f"dialer.{field}" in message
        assert "\n" not in message
        if r is not None:
            assert "at least 1/60 (one call a minute) and at most 5 calls" in message


def test_a_row_below_one_call_a_minute_is_kept_to_it(tmp_path: Path) -> None:
    """Written past check_pacing (by hand, or before it had a floor): 5e-324/s would hold the
    next call forever (an interval of inf)."""
    cfg = make_cfg(tmp_path, calls_per_second=5)
    state = RunState(cfg.campaign.name, Store.memory(), ManualClock(), max_concurrent=4)
    ctl = run_control.RunControl(cfg, Store.memory(), ManualClock(), asyncio.Event(),
                                 asyncio.Event(), state, controller="ctl-1")
    ctl.apply({"desired": "running", "max_concurrent": None, "calls_per_second": 5e-324})
    assert ctl.calls_per_second == 1 / 60 and ctl.interval == pytest.approx(60)


async def drive_fast(r: Rig, task: asyncio.Future) -> None:
    """0.05 s of run clock a step: a wait of a minute fails in seconds, not minutes."""
    while not task.done():
        await store_settled()
        r.clock.advance(0.05)  # type: ignore[attr-defined]
        await asyncio.sleep(0.001)


def slow_then_fast(backend: Backend, r: Rig, restored: list[float]) -> None:
    """The operator types 0.02/s (50 s apart) by mistake and puts 10/s back one second
    later."""
    say(backend, calls_per_second=0.02)

    async def restore() -> None:
        await r.clock.sleep(1.0)
        say(backend, calls_per_second=10.0)
        restored.append(r.clock.monotonic())
    asyncio.ensure_future(restore())


def test_a_new_pacing_cuts_the_wait_for_the_next_slot_short(backend: Backend) -> None:
    """The next call leaves one new interval after the previous one, not one old interval."""
    numbers = [fiction(i) for i in range(8)]
    restored: list[float] = []

    async def scenario() -> list[float]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=10) as r:
            stamps = stamp_originates(
                r, lambda n: slow_then_fast(backend, r, restored) if n == 3 else None)
            task, _ = await start_run(r)
            asyncio.ensure_future(drive_fast(r, task))
            await asyncio.wait_for(task, 60)
            return stamps
    stamps = asyncio.run(scenario())
    after = [s for s in stamps if s >= restored[0]]  # the same instant: the store call took none
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert len(stamps) == 8 and after, (restored, stamps)
    assert after[0] - restored[0] < 0.5, (restored, stamps)  # within a tick, not ~50 s
    assert min(gaps) >= 0.1 - 1e-9, gaps  # 10 a second again, not a burst


def test_a_new_pacing_cuts_the_originates_wait_after_a_slow_claim_short(
        backend: Backend) -> None:
    """The slow pacing is read during a claim (on PostgreSQL a worker thread's round trip):
    the Originate's own wait for its slot (sending.py) is cut short by the fast one too."""
    numbers = [fiction(i) for i in range(5)]
    restored: list[float] = []

    async def scenario() -> list[float]:
        async with rig(backend, {n: failed(1) for n in numbers}, clock=ManualClock(),
                       calls_per_second=10) as r:
            stamps = stamp_originates(r)
            place, placed = r.dialer.place, []

            async def slow_third(contact: dict[str, Any]) -> Any:
                got = await place(contact)
                placed.append(r.clock.monotonic())
                if len(placed) == 3:
                    slow_then_fast(backend, r, restored)
                    await r.clock.sleep(0.5)  # read during the claim, restored after it
                return got
            r.dialer.place = slow_third  # type: ignore[method-assign]
            task, _ = await start_run(r)
            asyncio.ensure_future(drive_fast(r, task))
            await asyncio.wait_for(task, 60)
            return stamps
    stamps = asyncio.run(scenario())
    after = [s for s in stamps if s >= restored[0]]  # the same instant: the store call took none
    assert len(stamps) == 5 and len(after) == 3, (restored, stamps)  # the third waited
    assert after[0] - restored[0] < 0.5, (restored, stamps)  # within a tick, not ~50 s


def test_a_row_beyond_the_bounds_is_kept_to_the_config(backend: Backend) -> None:
    """Written past check_pacing (by hand, or under an older config): clamped, never more."""
    numbers = [fiction(i) for i in range(6)]
    say(backend, max_concurrent=50)

    async def scenario() -> int:
        async with rig(backend, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       max_concurrent=2) as r:
            task, _ = await start_run(r)
            await asyncio.wait_for(task, 30)
            return r.pbx.max_live
    assert asyncio.run(scenario()) == 2


def test_a_cli_start_says_running_audited_and_snapshots_reach_the_store(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(3)]
    say(backend, desired="stopped")  # an earlier run's stop does not stop this one

    async def scenario() -> list[float]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.3) for n in numbers},
                       clock=ManualClock(), max_concurrent=1) as r:
            published: list[float] = []
            publish = r.store.publish_snapshot

            def counted(*args: Any) -> None:
                published.append(r.clock.monotonic())
                publish(*args)
            r.store.publish_snapshot = counted  # type: ignore[method-assign]
            task, _ = await start_run(r)
            await asyncio.wait_for(task, 60)
            return published
    published = asyncio.run(scenario())
    store = console(backend)
    row = store.run_control(CAMPAIGN)
    assert (row["desired"], row["updated_by"]) == ("running", "cli")
    assert [(a["actor"], a["detail"]) for a in store.audit_log(limit=1)] == [
        ("cli", {"campaign": CAMPAIGN, "desired": "running"})]
    final = store.snapshots(CAMPAIGN)
    assert len(final) == 1 and final[0]["snapshot"]["stopped"] is True
    assert final[0]["snapshot"]["outcomes"] == {"message_played": 3}
    assert final[0]["snapshot"]["controller"] == final[0]["controller"]
    assert len(published) >= 2
    gaps = [b - a for a, b in zip(published, published[1:-1])]  # the final one is forced
    assert min(gaps) >= run_control.PUBLISH_S - 1e-9


def test_standby_waits_for_the_consoles_start(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(3)]
    say(backend, desired="running")  # an old row: not a Start given to this run

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.1) for n in numbers}) as r:
            task, snaps = await start_run(r, standby=True)
            await asyncio.sleep(1.0)
            before = len(r.pbx.originates)
            rows = console(backend).snapshots(CAMPAIGN)
            say(backend, by="carol", desired="running")
            report = await asyncio.wait_for(task, 30)
            return {"before": before, "rows": rows, "report": report, "snaps": snaps}
    got = asyncio.run(scenario())
    assert got["before"] == 0
    assert any(s.console == run_control.STANDBY and s.status == "paused" for s in got["snaps"])
    assert got["rows"][0]["snapshot"]["console"] == run_control.STANDBY
    assert got["report"].originated == 3 and got["report"].stopped_by == "finished"


def test_standby_ends_on_the_consoles_stop_without_dialling(backend: Backend) -> None:
    async def scenario() -> tuple[int, Any]:
        async with rig(backend, {fiction(1): answer(["1"])}) as r:
            task, _ = await start_run(r, standby=True)
            await asyncio.sleep(0.5)
            say(backend, desired="stopped")
            report = await asyncio.wait_for(task, 30)
            return len(r.pbx.originates), report
    originates, report = asyncio.run(scenario())
    assert originates == 0 and report.stopped_by == "operator"


def test_snapshot_dict_is_json(tmp_path: Path) -> None:
    import json
    cfg: Config = make_cfg(tmp_path)
    store = Store.memory()
    state = RunState(cfg.campaign.name, store, ManualClock(), max_concurrent=4)
    snap = state.snapshot()
    out = run_control.snapshot_dict(snap, "ctl-1")
    assert json.loads(json.dumps(out)) == out
    assert out["controller"] == "ctl-1" and out["at"].endswith("Z")
    assert out["max_concurrent"] == 4 and out["outcomes"] == {}


def test_ivr_run_has_the_standby_option() -> None:
    from click.testing import CliRunner

    from ivr.cli import cli
    out = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "--standby" in out and "web console" in out
