"""The run log names who wrote the desired state, and only that: the row's updated_by is the
desired state's last writer (a pacing-only write keeps it), so a console pacing change was
logged "(by cli)" after the CLI's start. Both backends."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest

from conftest import Backend
from test_standby_pacing import CAMPAIGN, controller


def _console_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("console:")]


def test_a_pacing_change_is_not_credited_to_the_last_desired_states_writer(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> list[str]:
        rc = controller(backend)
        with caplog.at_level(logging.WARNING):
            await rc.begin(standby=False)
            backend.open().set_run_control(CAMPAIGN, max_concurrent=1, by="otto",
                                           now=datetime.now(timezone.utc))
            await rc.read()
            backend.open().set_run_control(CAMPAIGN, desired="paused", by="ada",
                                           now=datetime.now(timezone.utc))
            await rc.read()
        return _console_lines(caplog)
    pacing, pause = asyncio.run(go())  # the start changes nothing: the run starts running
    assert pacing.startswith("console: still running, max_concurrent 1, ")
    assert "cli" not in pacing and "by" not in pacing
    assert pause.startswith("console: paused (by ada), max_concurrent 1, ")
