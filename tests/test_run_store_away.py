"""The run with its store away (PostgreSQL stopped): a plan that cannot be read pauses the run
with "store unavailable", and it resumes and finishes once the store answers again. The store
is the real SQLite one; the failures are PostgreSQL's error class, raised by the plan read."""
from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from ivr.campaign import run as campaign_run
from ivr.campaign.clock import ManualClock
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import fiction, rig
from test_run_loop import run_campaign


def test_a_plan_read_failing_pauses_the_run_then_it_resumes(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    real_plan, failures = campaign_run.plan, []

    def plan(*args: Any) -> Any:
        if len(failures) < 2:  # the first two reads find PostgreSQL stopped
            failures.append(1)
            raise psycopg.OperationalError("connection refused\n\tIs the server running?")
        return real_plan(*args)
    monkeypatch.setattr(campaign_run, "plan", plan)
    numbers = [fiction(i) for i in range(3)]

    async def scenario() -> tuple[Any, list[Any], list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"]) for n in numbers},
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


def test_a_heartbeat_that_cannot_reach_the_store_pauses_new_calls_then_they_resume(
        backend: Backend) -> None:
    """No write of the run fails yet (nothing to write), but the controller's heartbeat finds
    the store away: the run says so and places no call until the heartbeat reaches it again."""
    numbers = [fiction(i) for i in range(3)]
    away = ["connection refused"] * 3  # the heartbeat's problem for its next three reads
    dialled_while_away: list[int] = []

    async def scenario() -> tuple[Any, list[Any], list[dict[str, Any]]]:
        async with rig(backend, {n: answer(["1"]) for n in numbers},
                       clock=ManualClock()) as r:
            def unreachable() -> str:
                if away:
                    dialled_while_away.append(r.dialer.originated)
                    return away.pop()
                return ""
            r.store.unreachable = unreachable  # type: ignore[method-assign]
            report, snaps, _ = await run_campaign(r)
            return report, snaps, r.calls()
    report, snaps, calls = asyncio.run(scenario())
    assert not away and set(dialled_while_away) == {0}  # nobody dialled while it was away
    paused = [s.paused for s in snaps if s.paused]
    assert paused and paused[0] == "store unavailable: connection refused"
    assert snaps[-1].paused == ""  # resumed
    assert report.stopped_by == "finished" and report.originated == 3
    assert sorted(c["outcome"] for c in calls) == ["message_played"] * 3
