"""On PostgreSQL no store round trip runs on the event loop during a run (issue 14 item 1).

The whole `app.run_campaign` against the fake PBX over real AMI and FastAGI and a real
PostgreSQL (the session's private cluster). Every method of the store records the thread it
runs on; between the run's first snapshot (start-up done) and its final one, none may run on
the loop's thread. With every store call slowed down, the loop must keep running while each
one is under way: counted in the loop's own ticks, not timed (a loaded machine's scheduling
made a 0.2 s lag bound flaky).
"""
from __future__ import annotations

import asyncio
import threading
import time
import types
from pathlib import Path
from typing import Any

from ivr import app
from ivr.campaign.state import Snapshot
from ivr.store.pg import PgStore
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer, no_answer

from test_dialer import HASHES, SECRET, fiction, make_cfg
from test_run_pg_writes import pg_store

PROBE_S = 0.005  # the loop probe's sleep
STALL_S = 10.0  # a store call whose loop never ticked meanwhile: the loop waited on it
# Store methods with no round trip: the heartbeat thread's last problem, a field read.
LOCAL = {"unreachable"}


class Watch:
    """What the store did on the loop's thread during the run, and the store calls during
    which the loop did not run."""

    def __init__(self) -> None:
        self.loop_thread: int | None = None
        self.active = False
        self.on_loop: list[str] = []
        self.calls = 0
        self.ticks = 0  # the loop's probe, counted on the loop
        self.probing = False  # the probe runs (not yet, or no more: nothing to wait for)
        self.stalled: list[str] = []

    def snapshot(self, snap: Snapshot) -> None:
        self.active = not snap.stopped  # the first snapshot: start-up done; the last: over


def instrument(store: PgStore, watch: Watch, delay_s: float = 0.0) -> None:
    """Every public method of the store (transaction included, still bound to the store: the
    SafeWriter learns `remote` from it) records its thread, after sleeping delay_s."""
    for name in dir(store):
        if name.startswith("_") or name in LOCAL:
            continue
        attr = getattr(store, name)
        if not isinstance(attr, types.MethodType):
            continue

        def wrapper(self: PgStore, *args: Any, _fn: Any = attr, _name: str = name,
                    **kw: Any) -> Any:
            if watch.active:
                watch.calls += 1
                if threading.get_ident() == watch.loop_thread:
                    watch.on_loop.append(_name)
                elif delay_s:
                    slow_call(watch, _name, delay_s)
            return _fn(*args, **kw)
        setattr(store, name, types.MethodType(wrapper, store))


def slow_call(watch: Watch, name: str, delay_s: float) -> None:
    """A store call off the loop that takes delay_s, then waits until the loop has ticked
    twice since it began: a loop that waits on the call never does (STALL_S later it is
    recorded), a busy machine only delays it."""
    start = watch.ticks
    time.sleep(delay_s)
    until = time.monotonic() + STALL_S
    while watch.probing and watch.ticks < start + 2 and time.monotonic() < until:
        time.sleep(0.002)
    if watch.probing and watch.ticks < start + 2:  # a call the run's end outlived: not one
        watch.stalled.append(name)


async def probe(watch: Watch) -> None:
    watch.probing = True
    try:
        while True:
            await asyncio.sleep(PROBE_S)
            watch.ticks += 1
    finally:  # cancelled once the run returned: a call still under way is not waited on
        watch.probing = False


def run_watched(tmp_path: Path, url: str, delay_s: float) -> tuple[Watch, Any, list[Any]]:
    numbers = [fiction(20 + i) for i in range(3)]
    store = pg_store(url, numbers)
    cfg = make_cfg(tmp_path, {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2})
    watch = Watch()
    callees = {numbers[0]: answer(["1"]), numbers[1]: no_answer(), numbers[2]: answer([])}

    async def scenario() -> Any:
        watch.loop_thread = threading.get_ident()
        lag = asyncio.create_task(probe(watch))
        try:
            async with FakePbx(callees, user="ivr", secret=SECRET) as pbx:
                node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
                report, _ = await asyncio.wait_for(app.run_campaign(
                    cfg, store, node=node, hashes=HASHES, on_snapshot=watch.snapshot), 120)
                return report
        finally:
            lag.cancel()
    instrument(store, watch, delay_s)
    try:
        report = asyncio.run(scenario())
        calls = store.q("SELECT attempt, outcome FROM calls ORDER BY id")
    finally:
        store.close()
    return watch, report, calls


def test_no_store_call_on_the_loop_during_a_run(tmp_path: Path, pg_url: str) -> None:
    watch, report, calls = run_watched(tmp_path, pg_url, 0.0)
    assert report.originated == 4, report  # the no_answer is retried once
    assert sorted(c["outcome"] for c in calls).count("no_answer") == 2, calls
    assert watch.calls > 10, watch.calls  # the run did use the store meanwhile
    assert watch.on_loop == [], f"store methods run on the event loop: {watch.on_loop}"


def test_the_loop_stays_responsive_with_a_slow_store(tmp_path: Path, pg_url: str) -> None:
    """Each store call takes 0.3 s more: the loop never waits on one. The loop must tick while
    each call is under way; one the loop waited on would hold it until STALL_S."""
    watch, report, calls = run_watched(tmp_path, pg_url, 0.3)
    assert report.originated == 4, report
    assert len(calls) == 4 and all(c["outcome"] for c in calls), calls
    assert watch.calls > 10, watch.calls
    assert watch.on_loop == [], f"store methods run on the event loop: {watch.on_loop}"
    assert watch.stalled == [], f"the loop waited on store calls: {watch.stalled}"
