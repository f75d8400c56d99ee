"""An IVR session past its limit (deadline.session_limit_s) is cut off: a session that stalled
(an await that never returns) stores `error` at stage `session-limit`, keeps a choice already
made, and ends, so that the PBX's AGI returns (the callee then hears the dialplan's failsafe:
tests/integration/test_stalled_session.py). On the fake PBX over real AMI and FastAGI."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ivr.callflow import agi_ivr
from ivr.callflow.flow import HOLD_WAIT_S
from ivr.campaign import deadline
from ivr.telephony.fake_pbx import answer

from test_dialer import contact, fiction, rig


def test_the_limit_is_past_every_call_the_flow_allows() -> None:
    longest = 76.0
    limit = deadline.session_limit_s(longest, HOLD_WAIT_S)
    assert limit >= 2 * longest + 7 * HOLD_WAIT_S  # a hold wait at every prompt of the path


def test_a_stalled_session_is_cut_off_and_its_outcome_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered = asyncio.Event()

    async def stalled(*_: Any, **__: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(agi_ivr, "drive", stalled)
    monkeypatch.setattr(deadline, "session_limit_s", lambda longest, hold: 0.5)
    number = fiction(30)

    async def scenario() -> tuple[dict[str, Any], set[int]]:
        async with rig(tmp_path, {number: answer()}) as r:
            await r.dialer.dial(contact(r.store, number))
            await asyncio.wait_for(entered.wait(), 10)
            await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=10)
            await r.until(lambda: not r.dialer.ivr_active, timeout=5)
            return r.calls()[0], set(r.dialer.ivr_active)
    call, active = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", agi_ivr.SESSION_LIMIT)
    assert call["retry_at"] is not None and active == set()
