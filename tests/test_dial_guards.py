"""What every Originate is judged against at the moment it leaves, on the real run loop at a high
calls_per_second (the fake PBX over real AMI and FastAGI, the real dialer, a store of each
backend): the node's max_channels, a soft stop, the console's pause. A batched claim (9c29f82,
taken out) judged them once for a whole burst; these failed on it (11 live on a node capped at
5; 9 Originates after the stop)."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr.campaign import run as campaign_run
from ivr.campaign import run_control
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, rig
from test_run_loop import run_campaign, stamp_originates

CAMPAIGN = "utest"  # make_cfg's
FAST = dict(max_concurrent=40, calls_per_second=200)  # a burst: many due, little pacing


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_control, "POLL_S", 0.1)


def test_a_nodes_max_channels_is_never_exceeded_at_a_high_rate(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(40)]
    live_at_send: list[int] = []  # calls in flight on the node as each Originate leaves

    async def scenario() -> tuple[campaign_run.RunReport, list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       **FAST) as r:
            r.ctl.node.max_channels = 5
            stamp_originates(r, before=lambda n: live_at_send.append(
                max(len(ns.calls) for ns in r.dialer.nodes.values())))
            report, _, _ = await run_campaign(r)
            return report, r.calls()
    report, calls = asyncio.run(scenario())
    assert len(live_at_send) == 40 and max(live_at_send) == 5  # the cap reached, never passed
    assert report.stopped_by == "finished"
    assert Counter(c["outcome"] for c in calls) == {"message_played": 40}


def test_no_originate_leaves_after_a_soft_stop(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(60)]
    stop = asyncio.Event()
    after_stop: list[int] = []

    def before(n: int) -> None:
        if stop.is_set():
            after_stop.append(n)
        elif n == 12:  # the first Ctrl-C while the 12th Originate leaves
            stop.set()

    async def scenario() -> tuple[campaign_run.RunReport, list[dict[str, Any]], int]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       **FAST) as r:
            stamp_originates(r, before=before)
            report, _, _ = await run_campaign(r, stop)
            return report, r.calls(), len(r.pbx.originates)
    report, calls, originates = asyncio.run(scenario())
    assert after_stop == [] and originates == 12
    assert report.stopped_by == "operator"
    assert [c["outcome"] for c in calls] == ["message_played"] * 12  # finished, not cut


def pause_now(backend: Backend, control: run_control.RunControl, desired: str) -> None:
    """The console's click (its own connection writes run_control), read by the run at once
    instead of at its next poll."""
    console = backend.open()
    console.set_run_control(CAMPAIGN, by="alice", now=datetime.now(timezone.utc),
                            desired=desired)
    control.apply(console.run_control(CAMPAIGN))


def test_no_originate_leaves_after_a_pause(backend: Backend,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    numbers = [fiction(i) for i in range(60)]
    controls: list[run_control.RunControl] = []

    class Kept(run_control.RunControl):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.newest = ""
            controls.append(self)

        def apply(self, row: Any) -> None:
            """pause_now applies the click at once; a poll that read the row before the click
            (off the loop on PostgreSQL) and returns after it must not undo it (it did once:
            12 more Originates before the next poll)."""
            if row is not None and str(row["updated_at"]) < self.newest:
                return
            self.newest = str(row["updated_at"]) if row is not None else self.newest
            super().apply(row)
    monkeypatch.setattr(campaign_run, "RunControl", Kept)

    async def scenario() -> tuple[int, campaign_run.RunReport, list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       **FAST) as r:
            stamps = stamp_originates(r, before=lambda n: pause_now(
                backend, controls[0], "paused") if n == 12 else None)
            task = asyncio.ensure_future(run_campaign(r))
            await r.until(lambda: len(stamps) >= 12)
            await asyncio.sleep(1.0)  # paused: every Originate after the 12th would be here
            held = len(stamps)
            pause_now(backend, controls[0], "running")
            report, _, _ = await asyncio.wait_for(task, 60)
            return held, report, r.calls()
    held, report, calls = asyncio.run(scenario())
    assert held == 12
    assert report.stopped_by == "finished" and report.originated == 60  # resumed, all called
    assert Counter(c["outcome"] for c in calls) == {"message_played": 60}
