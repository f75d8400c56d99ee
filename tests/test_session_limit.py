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
from ivr.callflow.flow import HOLD_REPLAYS, HOLD_WAIT_S
from ivr.campaign import deadline
from ivr.store.safe_writes import COMMIT_WAIT_S
from ivr.telephony.fake_pbx import answer

from conftest import make_config
from test_dialer import contact, fiction, rig


def test_the_limit_is_past_every_call_the_flow_allows() -> None:
    """Found in review: the first limit (twice the longest call, a hold wait per prompt) cut a
    legitimate call whose message and legal mentions each played into holds: each is played
    again once the line is back, HOLD_REPLAYS times at most, as are the legal mentions after
    an opposition not yet stored."""
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"})
    durations = {"intro": 20.0, "message": 120.0, "legal": 90.0, "goodbye": 5.0,
                 "optout_confirm": 5.0, "invalid": 5.0, "no_input": 5.0, "slot_question": 10.0}
    longest = deadline.longest_call_s(cfg, durations)
    flow = cfg.flow
    asking = (flow.max_repeats + 1) * (durations["intro"] + flow.input_timeout_s) + \
        flow.max_repeats * durations["no_input"]
    held = HOLD_REPLAYS * (durations["message"] + 2 * durations["legal"]) + \
        3 * HOLD_REPLAYS * HOLD_WAIT_S  # each owed prompt held out, then the commit's wait
    slot = durations["slot_question"] + flow.input_timeout_s if flow.ask_slot else 0.0
    worst = cfg.dialer.ring_timeout_s + asking + slot + held + COMMIT_WAIT_S
    assert deadline.session_limit_s(longest, HOLD_WAIT_S) > worst


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
