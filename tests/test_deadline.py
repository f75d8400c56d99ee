"""A controller never waits forever for a call it cannot see (issue 17): the longest possible
call, computed once from the config and the prompts' durations; past it, a call whose channel
is gone is settled, a live one hung up and settled. On the fake PBX with a ManualClock."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ivr.campaign import deadline
from ivr.campaign.clock import ManualClock
from ivr.telephony.fake_pbx import busy, no_answer

from conftest import Backend
from test_dialer import Rig, contact, fiction, make_cfg, rig

DURATIONS = {"intro": 8.0, "invalid": 2.0, "no_input": 3.0, "message": 40.0, "legal": 12.0,
             "goodbye": 1.0, "optout_confirm": 4.0, "slot_question": 6.0}


def test_the_longest_call_follows_the_flow(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, ring_timeout_s=30, amd=True)
    cfg.flow.max_repeats, cfg.flow.input_timeout_s, cfg.flow.ask_slot = 2, 5.0, False
    # 3 x (intro + wait) + 2 re-asks + message + legal + the longest ending: goodbye, the
    # opt-out's confirmation, or the wait for the store then the legal mentions (3 + 12)
    flow = 3 * (8 + 5) + 2 * 3 + 40 + 12 + (3 + 12)
    want = 30 + deadline.AMD_MAX_S + flow + deadline.MARGIN_S
    assert deadline.longest_call_s(cfg, DURATIONS) == pytest.approx(want)
    cfg.flow.ask_slot = True  # the slot question and its wait come on top
    assert deadline.longest_call_s(cfg, DURATIONS) == pytest.approx(want + 6 + 5)
    # A prompt the manifest lacks counts as the longest a prompt may be.
    missing = {k: v for k, v in DURATIONS.items() if k != "message"}
    assert deadline.longest_call_s(cfg, missing) == pytest.approx(
        want + 6 + 5 + cfg.prompts.max_duration_s - 40)


async def dial_blind(r: Rig, number: str, deadline_s: float) -> None:
    """One call whose node events never reach the dialer (as for a call it cannot see)."""
    r.dialer.deadline_s = deadline_s
    r.dialer.on_event = lambda ev: None
    await r.dialer.dial(contact(r.store, number))


async def advance(r: Rig, seconds: float) -> None:
    assert isinstance(r.clock, ManualClock)
    r.clock.advance(seconds)
    for _ in range(20):  # let the watch run and the node answer
        await asyncio.sleep(0.02)


def test_a_call_gone_unseen_is_settled_at_its_deadline(backend: Backend) -> None:
    number = fiction(70)

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with rig(backend, {number: busy()}, clock=ManualClock()) as r:
            await dial_blind(r, number, 60)
            await r.pbx.wait_idle()  # over on the PBX; the dialer never heard
            await advance(r, 58)
            before = r.dialer.in_flight()
            await advance(r, 4)
            await r.until(lambda: r.dialer.in_flight() == 0, timeout=5)
            return before, r.calls()[0]
    before, call = asyncio.run(scenario())
    assert before == 1  # not settled before its deadline
    assert (call["outcome"], call["stage"]) == ("error", "deadline") and call["retry_at"]


def test_a_live_call_past_its_deadline_is_hung_up_and_settled(backend: Backend) -> None:
    number = fiction(71)

    async def scenario() -> tuple[dict[str, Any], list[str], set[str]]:
        async with rig(backend, {number: no_answer()}, clock=ManualClock(),
                       ring_timeout_s=120) as r:
            await dial_blind(r, number, 30)
            await advance(r, 31)
            await r.until(lambda: r.dialer.in_flight() == 0, timeout=5)
            await r.pbx.wait_idle(5)
            actions = [str(a.get("Action")).lower() for a in r.pbx.actions]
            return r.calls()[0], actions, r.pbx.live
    call, actions, live = asyncio.run(scenario())
    assert "hangup" in actions and live == set()
    assert (call["outcome"], call["stage"]) == ("error", "deadline") and call["retry_at"]
