"""A controller's IVR session that stalls mid-call (an await that never returns) is cut off at
its limit (deadline.session_limit_s: twice the longest call plus a hold wait per prompt; made
3 s here): its outcome is stored (`error`, stage `session-limit`, retried) and the session
closed, so that Asterisk's AGI returns and [ivr-outbound]'s failsafe plays the legal mentions,
then Hangup(41). Before, the callee (who stays silent on the line for 600 s) heard silence
until they hung up, the line billed all along: Asterisk's TIMEOUT(absolute) does not end an
AGI whose FastAGI server sends nothing (tried: the channel stayed up 60 s past it)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ivr import app
from ivr.callflow import agi_ivr
from ivr.campaign import deadline
from ivr.config import Config
from ivr.prompts.build import load_manifest
from ivr.store.sqlite import Store
from ivr.telephony.ami import Ami

from .conftest import add_contacts, failsafe_times, fiction

LIMIT_S = 3.0


async def _stalled_call(cfg: Config, store: Store) -> dict[str, float]:
    """When (from the Originate) a second AMI session saw the failsafe and the Hangup."""
    add_contacts(store, [fiction("30")])  # answers, presses nothing, stays on the line
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    ctl = await app.start(cfg, store)
    try:
        t0 = time.monotonic()
        await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
        channel = store.one("SELECT channel_id FROM calls")["channel_id"]
        seen = await failsafe_times(watch, channel, {"failsafe", "hangup", "settled"}, 60, ctl)
        return {k: v - t0 for k, v in seen.items()}
    finally:
        await ctl.close()
        watch.close()


def test_a_stalled_session_is_cut_off_and_the_callee_hears_the_failsafe(
        pbx_cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async def stalled(*_: Any, **__: Any) -> Any:
        await asyncio.Event().wait()  # the session's await that never returns

    monkeypatch.setattr(agi_ivr, "drive", stalled)
    monkeypatch.setattr(deadline, "session_limit_s", lambda longest, hold: LIMIT_S)
    store = Store.memory()
    seen = asyncio.run(_stalled_call(pbx_cfg, store))
    assert {"failsafe", "hangup"} <= seen.keys(), seen
    assert LIMIT_S <= seen["failsafe"] <= LIMIT_S + 10, seen  # at the limit, not before
    legal_s = load_manifest(pbx_cfg)["prompts"]["legal"]["duration_s"]
    assert seen["hangup"] - seen["failsafe"] >= legal_s - 1  # the legal mentions were played
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"]) == ("error", agi_ivr.SESSION_LIMIT)
    assert call["retry_at"] is not None  # nobody heard the message: retried
