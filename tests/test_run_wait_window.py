"""`ivr run --wait` (campaign/window_wait.py): a run started before the calling window closes
waits for it to reopen and calls the rest, instead of ending at the first close (a run kept as
a service called until 13:00 on its first day, then stopped for good, status 0); a stop
during the wait ends it at once; without --wait the run still ends `finished`. The fake PBX,
a store of each backend, a manual clock jumped across the closed hour."""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from click.testing import CliRunner

from ivr import app
from ivr.campaign import run as campaign_run
from ivr.campaign.clock import ManualClock
from ivr.campaign.state import RunState, Snapshot
from ivr.store.sqlite import parse_utc
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend
from test_dialer import HASHES, SECRET, Rig, add_contacts, fiction, make_cfg, store_settled

# Tuesday 1 December 2026, 12:59:58.5 in Paris: the morning window (10:00-13:00) closes in
# 1.5 s, the afternoon one opens at 14:00 (13:00 UTC).
START = datetime(2026, 12, 1, 11, 59, 58, 500000, tzinfo=timezone.utc)
CLOSED = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
REOPENS = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
NUMBERS = [fiction(i) for i in range(10, 14)]


@asynccontextmanager
async def window_rig(backend: Backend) -> AsyncIterator[Rig]:
    """test_dialer.rig with the décret's windows kept (not demo_any_hour), one call a second."""
    cfg = make_cfg(backend, calls_per_second=1)
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule,
                                                                demo_any_hour=False))
    store = backend.open()
    add_contacts(store, NUMBERS)
    clock = ManualClock(START)
    async with FakePbx({n: answer(["1"]) for n in NUMBERS}, user="ivr", secret=SECRET) as pbx:
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
        ctl = await app.start(cfg, store, clock, node=node, hashes=HASHES)
        try:
            yield Rig(pbx, ctl, store, cfg, clock)
        finally:
            await ctl.close()


async def drive(r: Rig, done: asyncio.Future) -> None:
    """About 5x real time while calls may be placed; across the closed hour, with nothing in
    flight, 10 s a step (the hour in ~1 s)."""
    clock = r.clock
    assert isinstance(clock, ManualClock)
    while not done.done():
        await store_settled()
        idle = not r.dialer.in_flight() and CLOSED < clock.now() < REOPENS
        clock.advance(10.0 if idle else 0.01)
        await asyncio.sleep(0.002)


def start(r: Rig, stop: asyncio.Event, **kw: Any) -> tuple[asyncio.Future, list[Snapshot]]:
    state = RunState(r.cfg.campaign.name, r.store, r.clock,
                     max_concurrent=r.cfg.dialer.max_concurrent, nodes=r.dialer.node_snapshots)
    snaps: list[Snapshot] = []
    state.subscribe(snaps.append)
    task = asyncio.ensure_future(campaign_run.run(r.cfg, r.store, r.dialer, r.clock, stop,
                                                  asyncio.Event(), state, **kw))
    return task, snaps


def test_a_waiting_run_calls_the_rest_when_the_window_reopens(backend: Backend) -> None:
    async def scenario() -> tuple[Any, list[Snapshot], list[dict[str, Any]]]:
        async with window_rig(backend) as r:
            task, snaps = start(r, asyncio.Event(), wait=True)
            await drive(r, task)
            report = await asyncio.wait_for(task, 60)
            await r.settled()
            return report, snaps, r.calls()
    report, snaps, calls = asyncio.run(scenario())
    started = sorted(parse_utc(c["started_at"]) for c in calls)
    before = [t for t in started if t < CLOSED]
    assert report.stopped_by == "finished" and report.originated == len(NUMBERS), report
    assert sorted(c["number"] for c in calls) == NUMBERS
    assert before and len(before) < len(NUMBERS)  # some in the morning ...
    assert all(t >= REOPENS for t in started[len(before):])  # ... the rest from 14:00 Paris
    waiting = [s for s in snaps if s.status == "waiting" and CLOSED < s.at < REOPENS]
    # one line all along (the progress line is printed once a minute while it is the same)
    said = {s.waiting for s in waiting}
    assert len(said) == 1 and said.pop().endswith(
        " outside window; waiting until 2026-12-01 13:00 UTC"), {s.waiting for s in waiting}
    assert report.why.startswith("all done"), report.why


def test_a_stop_during_the_wait_ends_the_run_at_once(backend: Backend) -> None:
    async def scenario() -> tuple[Any, float, list[dict[str, Any]]]:
        async with window_rig(backend) as r:
            stop = asyncio.Event()
            task, snaps = start(r, stop, wait=True)
            clock = r.clock
            assert isinstance(clock, ManualClock)
            while not any(s.status == "waiting" and s.at > CLOSED for s in snaps):
                assert not task.done(), task.result()
                clock.advance(0.01)
                await asyncio.sleep(0.002)
            await clock.run_for(120.0, step=10.0)  # well into the wait
            assert not task.done()
            stop.set()  # the first SIGTERM / Ctrl-C
            t0 = clock.monotonic()
            report = await asyncio.wait_for(task, 5)  # no clock moved: it did not wait on
            return report, clock.monotonic() - t0, r.calls()
    report, waited, calls = asyncio.run(scenario())
    assert report.stopped_by == "operator" and waited == 0.0
    assert 0 < len(calls) < len(NUMBERS) and all(c["outcome"] for c in calls)


def test_without_wait_the_run_still_ends_finished_at_the_close(backend: Backend) -> None:
    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with window_rig(backend) as r:
            task, _ = start(r, asyncio.Event())
            await drive(r, task)
            return await asyncio.wait_for(task, 60), r.calls()
    report, calls = asyncio.run(scenario())
    assert report.stopped_by == "finished" and 0 < report.originated < len(NUMBERS)
    assert "outside window" in report.why and len(calls) == report.originated


def test_ivr_run_has_the_wait_option() -> None:
    from ivr.cli import cli
    out = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "--wait" in out and "next allowed time" in out
