"""Stopping is always possible (issue 17), through the real composition root on the fake PBX:
SIGTERM is a first Ctrl-C (calls in flight finish); the drain is bounded by
dialer.drain_timeout_s, then calls are hung up; a second signal ends the run within a few
seconds even when the PBX no longer answers, leaving the rest to the next run."""
from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr.campaign import stopping
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend
from test_dialer import HASHES, SECRET, add_contacts, fiction, make_cfg

NUMBERS = [fiction(i) for i in range(4)]


async def run_with_signals(where: Path | Backend, prompt_s: float,
                           signals: list[tuple[int, float]], *, hang_pbx: bool = False,
                           **dialer: Any) -> tuple[Any, list[dict[str, Any]], float]:
    """One run of NUMBERS (2 at a time); once both calls are up, each signal is sent after its
    delay. Returns the report (or the exception), the calls and the run's duration."""
    backend = where if isinstance(where, Backend) else Backend("sqlite", where)
    cfg = make_cfg(backend, max_concurrent=2, **dialer)
    store = backend.open()
    add_contacts(store, NUMBERS)
    loop = asyncio.get_running_loop()
    async with FakePbx({n: answer(["1"], prompt_s=prompt_s) for n in NUMBERS},
                       user="ivr", secret=SECRET) as pbx:
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)

        async def operator() -> None:
            while len(pbx.live) < 2:
                await asyncio.sleep(0.02)
            pbx.silent = hang_pbx  # the PBX stops answering any action
            for sig, delay in signals:
                await asyncio.sleep(delay)
                os.kill(os.getpid(), sig)
        op = asyncio.ensure_future(operator())
        t0 = loop.time()
        try:
            result: Any = (await app.run_campaign(cfg, store, node=node, hashes=HASHES))[0]
        except stopping.Interrupted as exc:
            result = exc
        elapsed = loop.time() - t0
        op.cancel()
        return result, store.q("SELECT * FROM calls ORDER BY id"), elapsed


def test_sigterm_lets_the_calls_in_flight_finish_and_places_no_new_call(backend: Backend) -> None:
    report, calls, _ = asyncio.run(run_with_signals(backend, 0.4,
                                                    [(signal.SIGTERM, 0.1)]))
    assert report.stopped_by == "operator" and report.originated == 2
    assert [c["outcome"] for c in calls] == ["message_played"] * 2  # finished, not cut


@pytest.mark.parametrize("sig", [signal.SIGHUP])
def test_sighup_is_a_first_ctrl_c_too(backend: Backend, sig: int) -> None:
    """Found in a hunt: a dropped ssh session's HUP killed `ivr run` mid-call (exit 129), and
    the next run called those people again."""
    report, calls, _ = asyncio.run(run_with_signals(backend, 0.4, [(sig, 0.1)]))
    assert report.stopped_by == "operator" and report.originated == 2
    assert [c["outcome"] for c in calls] == ["message_played"] * 2


def test_the_drain_is_bounded_by_drain_timeout_then_calls_are_hung_up(backend: Backend) -> None:
    report, calls, elapsed = asyncio.run(run_with_signals(
        backend, 30, [(signal.SIGTERM, 0.1)], drain_timeout_s=1.0))
    assert report.stopped_by == "operator" and elapsed < 10  # the 30-second prompts were cut
    assert len(calls) == 2 and all(c["outcome"] for c in calls)
    assert Counter(c["outcome"] for c in calls) != {"message_played": 2}


def test_a_second_signal_ends_the_run_within_seconds_when_the_pbx_hangs(backend: Backend) -> None:
    result, calls, elapsed = asyncio.run(run_with_signals(
        backend, 30, [(signal.SIGINT, 0.1), (signal.SIGTERM, 0.2)], hang_pbx=True))
    assert isinstance(result, stopping.Interrupted), result
    assert "\n" not in str(result) and "reconciles" in str(result)
    assert elapsed < stopping.FORCE_EXIT_S + 2
    assert len(calls) == 2  # left open here, for the next run's reconciliation


def test_signals_go_back_to_their_defaults_after_a_run(tmp_path: Path) -> None:
    asyncio.run(run_with_signals(tmp_path, 0.1, [(signal.SIGTERM, 0.0)]))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.fixture(autouse=True)
def _no_stray_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a test leave the last resort armed, it must not end pytest itself."""
    monkeypatch.setattr(stopping.os, "_exit", lambda code: None)


def test_a_hard_stop_before_the_channels_exist_still_hangs_them_up(backend: Backend) -> None:
    """Found in review: an Async Originate's Response comes before its channel exists; a hard
    stop then hung up "No such channel" once, and the call rang on after the stop (the run
    gave up HANGUP_GRACE_S later, the callee still on the line). The hang-up is sent again
    until the calls end."""
    async def scenario() -> tuple[Any, list[dict[str, Any]], int, int]:
        cfg = make_cfg(backend, max_concurrent=2)
        store = backend.open()
        add_contacts(store, NUMBERS)
        async with FakePbx({n: answer(["1"], prompt_s=30) for n in NUMBERS},
                           user="ivr", secret=SECRET) as pbx:
            pbx.originate_lag_s = 1.0  # Asterisk makes the channel in a thread of its own
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)

            async def operator() -> None:
                while len(pbx.calls) < 2:  # both queued, neither channel made yet
                    await asyncio.sleep(0.01)
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(0.05)
                os.kill(os.getpid(), signal.SIGTERM)  # the second: hard stop
            op = asyncio.ensure_future(operator())
            try:
                result: Any = (await app.run_campaign(cfg, store, node=node,
                                                      hashes=HASHES))[0]
            except stopping.Interrupted as exc:
                result = exc
            op.cancel()
            await asyncio.sleep(1.5)  # past the channels' creation, had they been missed
            return result, store.q("SELECT * FROM calls ORDER BY id"), len(pbx.live), \
                pbx.max_live
    result, calls, live, made = asyncio.run(scenario())
    assert made >= 1, "the channels were never made: the test proves nothing"
    assert live == 0
    assert len(calls) == 2 and all(c["outcome"] == "error" for c in calls), calls
