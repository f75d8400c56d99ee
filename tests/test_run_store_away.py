"""The run with its store away (PostgreSQL stopped): a plan that cannot be read pauses the run
with "store unavailable", and it resumes and finishes once the store answers again. The store
is the real SQLite one; the failures are PostgreSQL's error class, raised by the plan read."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ivr.campaign import run as campaign_run
from ivr.campaign.clock import ManualClock
from ivr.telephony.fake_pbx import answer

from test_dialer import fiction, rig
from test_run_loop import run_campaign


def test_a_plan_read_failing_pauses_the_run_then_it_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_plan, failures = campaign_run.plan, []

    def plan(*args: Any) -> Any:
        if len(failures) < 2:  # the first two reads find PostgreSQL stopped
            failures.append(1)
            raise psycopg.OperationalError("connection refused\n\tIs the server running?")
        return real_plan(*args)
    monkeypatch.setattr(campaign_run, "plan", plan)
    numbers = [fiction(i) for i in range(3)]

    async def scenario() -> tuple[Any, list[Any], list[dict[str, Any]]]:
        async with rig(tmp_path, {n: answer(["1"]) for n in numbers},
                       clock=ManualClock()) as r:
            report, snaps, _ = await run_campaign(r)
            return report, snaps, r.calls()
    report, snaps, calls = asyncio.run(scenario())
    assert len(failures) == 2
    assert report.stopped_by == "finished" and report.originated == 3
    assert report.paused == "connection refused Is the server running?"
    paused = [s.paused for s in snaps if s.paused]
    assert paused and paused[0] == "store unavailable: connection refused Is the server running?"
    assert snaps[-1].paused == ""  # resumed
    assert sorted(c["outcome"] for c in calls) == ["message_played"] * 3
