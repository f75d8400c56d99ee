"""A connection lost at the very start of a run (the CLI start's write of the run control,
campaign/run_control.py begin): found in a hunt, the store's OperationalError raised out of
`ivr run`; now the run pauses, says "store unavailable", tries again each second and calls
the list once the store answers. Both backends; the fake PBX; a manual clock."""
from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import psycopg

from ivr.campaign.clock import ManualClock
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, rig
from test_run_loop import run_campaign

NUMBERS = [fiction(20), fiction(21)]


def test_a_start_write_failing_once_pauses_then_the_run_calls(backend: Backend) -> None:
    lost = (psycopg.OperationalError("server closed the connection unexpectedly")
            if backend.name == "postgresql" else sqlite3.OperationalError("disk I/O error"))
    writes: list[str] = []

    async def scenario() -> tuple[Any, list[Any], Any]:
        async with rig(backend, {n: answer(["1"]) for n in NUMBERS},
                       clock=ManualClock()) as r:
            real = r.store.set_run_control

            def flaky(campaign: str, **kw: Any) -> Any:
                writes.append(kw.get("desired", ""))
                if len(writes) == 1:
                    raise lost
                return real(campaign, **kw)
            r.store.set_run_control = flaky
            report, snaps, _ = await run_campaign(r)
            await r.settled()
            return report, snaps, r.store.run_control(r.cfg.campaign.name)
    report, snaps, row = asyncio.run(scenario())
    assert report.stopped_by == "finished" and report.originated == len(NUMBERS), report
    assert writes[:2] == ["running", "running"] and row["desired"] == "running"
    paused = [s for s in snaps if s.paused.startswith("store unavailable")]
    assert paused and str(lost) in paused[0].paused
    assert paused[0].originated == 0  # nobody called before the start was written
