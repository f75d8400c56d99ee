"""Asterisk cannot open the prompt files (a folder its user cannot enter): each answered call is
`error`, retried, and the controller's log says so in one line naming the file and what to
check, not an 18-line traceback per call. The fake PBX answers STREAM FILE as res_agi does for
a file it cannot open (result=-1 endpos=0, the line still up)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import dial_all, fiction, rig


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the log, not the store
def test_an_unreadable_prompt_is_one_log_line_and_an_error_retried(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    n = fiction(31)
    callee = dataclasses.replace(answer(["1"]), unreadable=True)

    async def scenario() -> list[dict[str, Any]]:
        async with rig(backend, {n: callee}) as r:
            await dial_all(r, [n])
            await r.until(lambda: bool(r.calls()) and r.calls()[0]["outcome"] is not None)
            return r.calls()
    with caplog.at_level(logging.INFO, logger="ivr.callflow.agi_ivr"):
        calls = asyncio.run(scenario())
    assert [c["outcome"] for c in calls] == ["error"] and calls[0]["retry_at"] is not None
    said = [r for r in caplog.records if r.name == "ivr.callflow.agi_ivr"
            and r.levelno >= logging.ERROR]
    assert len(said) == 1 and said[0].exc_info is None, [r.getMessage() for r in said]
    line = said[0].getMessage()
    assert "could not play ivr/" in line and "read them and their folders" in line
    assert "\n" not in line
