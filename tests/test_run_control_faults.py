"""Run control under faults (ivr/campaign/run_control.py, run.py): one unexpected error while
reading the run control no longer ends its watch (Stop and Pause were then unheard for the rest
of the run, silently); a stop while the store is away ends the run cleanly (it raised the
store's error from the final plan: exit 1); a row holding only the console's pacing is not a
pause a starting run joins."""
from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import Backend
from ivr.campaign import run as campaign_run
from ivr.campaign import run_control
from ivr.campaign.clock import Clock
from ivr.campaign.state import RunState
from ivr.telephony.fake_pbx import answer
from ivr.web import service

from test_dialer import fiction, make_cfg, rig


def test_a_stop_after_an_odd_read_error_is_still_heard(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_control, "POLL_S", 0.1)
    numbers = [fiction(i) for i in range(40)]

    async def scenario() -> Any:
        async with rig(tmp_path, {n: answer(["1"], prompt_s=0.3) for n in numbers},
                       max_concurrent=1, calls_per_second=2) as r:
            real, reads = r.store.run_control, [0]

            def flaky(campaign: str) -> Any:
                reads[0] += 1
                if reads[0] == 4:  # not a store-away error: "disk image is malformed"
                    raise sqlite3.DatabaseError("database disk image is malformed")
                return real(campaign)
            r.store.run_control = flaky
            state = RunState(r.cfg.campaign.name, r.store, r.clock, max_concurrent=1,
                             nodes=r.dialer.node_snapshots)
            task = asyncio.ensure_future(campaign_run.run(
                r.cfg, r.store, r.dialer, r.clock, asyncio.Event(), asyncio.Event(), state))
            await asyncio.sleep(1.5)
            assert reads[0] >= 4
            Backend("sqlite", tmp_path).open().set_run_control(
                "utest", desired="stopped", by="alice", now=datetime.now(timezone.utc))
            return await asyncio.wait_for(task, 10)
    report = asyncio.run(scenario())
    assert report.stopped_by == "operator"


def test_a_stop_while_the_store_is_away_ends_the_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def away(*args: Any) -> Any:
        raise psycopg.OperationalError("connection refused")
    monkeypatch.setattr(campaign_run, "plan", away)  # every plan, the final one's too
    numbers = [fiction(i) for i in range(3)]

    async def scenario() -> Any:
        async with rig(tmp_path, {n: answer(["1"]) for n in numbers}) as r:
            state = RunState(r.cfg.campaign.name, r.store, r.clock,
                             max_concurrent=10, nodes=r.dialer.node_snapshots)
            stop = asyncio.Event()
            task = asyncio.ensure_future(campaign_run.run(
                r.cfg, r.store, r.dialer, r.clock, stop, asyncio.Event(), state))
            await asyncio.sleep(2.0)  # paused: the store unavailable
            stop.set()  # Ctrl-C, SIGTERM or the console
            return await asyncio.wait_for(task, 20), r.pbx.originates
    report, originates = asyncio.run(scenario())
    assert originates == [] and report.stopped_by == "operator"
    assert report.why == "store unavailable: connection refused"


def test_a_row_of_pacing_alone_is_no_pause_to_join(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_cfg(tmp_path)
    store = Backend("sqlite", tmp_path).open()
    # the console: pacing saved (5 calls at most), no Start, Pause or Stop ever pressed
    service.pacing(cfg, store, "utest", "5", "", "alice", datetime.now(timezone.utc))
    assert service.desired_set(store.run_control("utest")) is None

    async def begin() -> bool:
        clock = Clock()
        state = RunState("utest", store, clock, max_concurrent=10)
        ctl = run_control.RunControl(cfg, store, clock, asyncio.Event(), asyncio.Event(), state)
        await ctl.begin(standby=False)
        return ctl.paused
    assert asyncio.run(begin()) is False
    assert store.run_control("utest")["desired"] == "running"


def test_a_stop_that_left_calls_open_exits_5(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Exit status 1 made the README's unit (Restart=on-failure) start the run again 30 s
    after a console hard stop with the PBX away: it wrote `running` over the stop and dialled.
    Its own status now, which the unit's RestartPreventExitStatus names."""
    from types import SimpleNamespace

    from conftest import make_config
    from ivr import app, cli
    from ivr.campaign.stopping import Interrupted

    async def left_open(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted("stopped with 2 call(s) still open: the next `ivr run` reconciles them")
    monkeypatch.setattr(app, "run_campaign", left_open)
    with pytest.raises(SystemExit) as exc:
        cli._run(SimpleNamespace(cfg=make_config()), store=None)
    assert exc.value.code == cli.EXIT_LEFT_OPEN == 5
    assert capsys.readouterr().err == ("error: stopped with 2 call(s) still open: the next "
                                       "`ivr run` reconciles them\n")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "\nRestartPreventExitStatus=4 5\n" in readme


def test_a_hold_is_not_shown_once_nobody_is_due(tmp_path: Path) -> None:
    """A node's hold seen while contacts were due stayed in the snapshot (the console shows it
    before the real reason) for as long as nobody was due: here all through a closed window,
    sending the operator to a PBX that works."""
    from datetime import timedelta

    from test_dialer import store_settled
    from test_run_wait_window import START, window_rig
    backend = Backend("sqlite", tmp_path)

    async def scenario() -> Any:
        async with window_rig(backend) as r:
            r.dialer.pbx_fault(hold_s=3.0)  # the PBX restarted: a 3 s hold
            state = RunState(r.cfg.campaign.name, r.store, r.clock, max_concurrent=10,
                             nodes=r.dialer.node_snapshots)
            stop = asyncio.Event()
            task = asyncio.ensure_future(campaign_run.run(
                r.cfg, r.store, r.dialer, r.clock, stop, asyncio.Event(), state, wait=True))
            seen_holding = False
            for _ in range(120):  # 6 s: the window closes, the hold ends
                await store_settled()
                r.clock.advance(0.05)
                await asyncio.sleep(0.005)
                seen_holding = seen_holding or bool(state.publish().holding)
            while r.clock.now() < START + timedelta(minutes=30):
                await store_settled()
                r.clock.advance(10)
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)
            snap = state.publish()
            stop.set()
            while not task.done():
                r.clock.advance(0.5)
                await asyncio.sleep(0.01)
            return seen_holding, snap, r.dialer.ready()
    seen_holding, snap, ready = asyncio.run(scenario())
    assert seen_holding and ready  # the hold was shown while it held, and it ended
    assert snap.holding == "" and snap.waiting


def test_a_breaker_stop_that_left_calls_open_still_exits_4(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """A carrier breaker's stop whose calls the PBX never ended: its final snapshot says
    carrier, so the status is the breaker's (4, which the unit does not restart either)."""
    from types import SimpleNamespace

    from conftest import make_config
    from ivr import app, cli
    from ivr.campaign.stopping import Interrupted
    from test_carrier_guard import final

    async def left_open(*args: Any, on_snapshot: Any, **kwargs: Any) -> Any:
        on_snapshot(final("carrier"))
        raise Interrupted("stopped with 1 call(s) still open: the next `ivr run` reconciles them")
    monkeypatch.setattr(app, "run_campaign", left_open)
    with pytest.raises(SystemExit) as exc:
        cli._run(SimpleNamespace(cfg=make_config()), store=None)
    assert exc.value.code == cli.EXIT_CARRIER == 4
    assert "still open" in capsys.readouterr().err


def test_a_breaker_stop_is_told_even_when_the_store_is_away_at_the_end() -> None:
    """On PostgreSQL the end reads the counts first: with the store away that raised before
    the breaker's stop was read, and the run ended as an operator's stop, status 0."""
    from types import SimpleNamespace

    from ivr.campaign.run import RunReport
    from ivr.campaign.run_end import RunEnd

    async def away() -> None:
        raise psycopg.OperationalError("connection refused")

    async def scenario() -> RunReport:
        told: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        told.set_result(None)
        end = RunEnd()
        end.report = RunReport(stopped_by="operator")
        end.dialer = SimpleNamespace(
            remote=True, carrier=SimpleNamespace(why="the trunk refused 20 calls in a row"),
            writer=SimpleNamespace(flush=lambda: None, settled=away, last_problem=""))
        end.state = SimpleNamespace(count_now=away, finish=lambda *a: None)
        end.control = SimpleNamespace(poll_s=0.1, stopped_by="carrier")
        end._carrier_told = told
        return await end._finish()
    report = asyncio.run(scenario())
    assert (report.stopped_by, report.why) == ("carrier", "the trunk refused 20 calls in a row")


@pytest.mark.parametrize("left, open_, words", [
    (0, False, "stopped by a second signal while the run was ending: every call had ended "
               "(only its last summary was not read)"),
    (2, True, "stopped by a second signal before every call had ended: the next `ivr run` "
              "reconciles the attempts left open")])
def test_a_second_signal_says_whether_calls_were_left_open(left: int, open_: bool,
                                                           words: str) -> None:
    """Found in review: a second Ctrl-C while a stopped run read its last plan (seconds at a
    million contacts) said calls were left open, and exited 5, when every call had ended."""
    from ivr.campaign.stopping import Interrupted, Stopper

    async def main() -> None:
        stopper = Stopper()
        never = asyncio.ensure_future(asyncio.Event().wait())  # the run, still reading
        stopper.forced.set()
        with pytest.raises(Interrupted) as err:
            await stopper.until_done(never, open_calls=lambda: left)
        assert (str(err.value), err.value.left_open) == (words, open_)
        assert never.cancelled()
    asyncio.run(main())


def test_a_clean_forced_end_exits_0(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from conftest import make_config
    from ivr import app, cli
    from ivr.campaign.stopping import Interrupted

    async def ended(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted("stopped by a second signal while the run was ending: every call "
                          "had ended (only its last summary was not read)", left_open=False)
    monkeypatch.setattr(app, "run_campaign", ended)
    cli._run(SimpleNamespace(cfg=make_config()), store=None)  # no SystemExit: status 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith("run stopped: stopped by a second signal while")


def test_a_carrier_stop_forced_to_its_end_still_exits_4(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Found in the diff's review: a second signal after the breaker's stop, every call
    ended, exited 0 and hid the "fix the trunk" status the README documents."""
    from types import SimpleNamespace

    from conftest import make_config
    from ivr import app, cli
    from ivr.campaign import progress
    from ivr.campaign.stopping import Interrupted

    class Shown:  # the run's last snapshot, as Progress keeps it
        last = SimpleNamespace(stopped_by="carrier")

        def __init__(self, console: Any) -> None: ...
        def __enter__(self) -> "Shown": return self
        def __exit__(self, *exc: Any) -> None: ...
        def show(self, snapshot: Any) -> None: ...

    async def ended(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted("stopped by a second signal while the run was ending: every call "
                          "had ended (only its last summary was not read)", left_open=False)
    monkeypatch.setattr(app, "run_campaign", ended)
    monkeypatch.setattr(progress, "Progress", Shown)
    with pytest.raises(SystemExit) as exc:
        cli._run(SimpleNamespace(cfg=make_config()), store=None)
    assert exc.value.code == cli.EXIT_CARRIER == 4
    assert capsys.readouterr().err.startswith("error: stopped by a second signal while")
