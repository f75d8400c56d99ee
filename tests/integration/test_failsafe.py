"""Issue 4.7: with the controller unreachable the dialplan failsafe ends the call cleanly, and the
attempt still gets an outcome: `error`, once the controller sees it. Both failsafes play the
legal mentions: the outbound one the campaign's (owed in every message), the inbound opposition
line's the line's (the written route for an opposition)."""
from __future__ import annotations

import asyncio
import time

from ivr import app
from ivr.config import Config
from ivr.prompts.build import load_manifest
from ivr.store.sqlite import Store
from ivr.telephony.contract import (CALLBACK_CONTEXT, CALLBACK_EXTEN, EVENT_FAILSAFE,
                                    FAILSAFE_CALL_ID, FAILSAFE_CALLBACK, FAILSAFE_STATUS,
                                    SIM_CALLER_CONTEXT)

from .conftest import add_contacts, failsafe_times, fiction


async def _failsafe_seen_live(cfg: Config, store: Store) -> float:
    add_contacts(store, [fiction("10")])
    ctl = await app.start(cfg, store, agi=False)  # AMI up, FastAGI down
    try:
        t0 = time.monotonic()
        await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
        while ctl.dialer.inflight and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.1)
        return time.monotonic() - t0
    finally:
        await ctl.close()


def test_failsafe_hangs_up_and_records_error(pbx_cfg: Config) -> None:
    store = Store.memory()
    elapsed = asyncio.run(_failsafe_seen_live(pbx_cfg, store))
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"]) == ("error", "failsafe")
    assert call["hangup_cause"] == "41"  # the failsafe's clean temporary-failure hangup
    # No dead air: the legal mentions, then the call ends at once, not at a timeout
    assert elapsed < load_manifest(pbx_cfg)["prompts"]["legal"]["duration_s"] + 10
    assert call["retry_at"] is not None  # nobody heard anything: a safe retry is planned


async def _outbound_failsafe_times(cfg: Config, store: Store) -> tuple[float, float, str]:
    """A callee answers while no FastAGI server listens: seconds from the failsafe's
    UserEvent to the channel's Hangup, seen by a second AMI session, until the controller
    settled the attempt, and the legal sound the Originate named."""
    from ivr.telephony.ami import Ami
    add_contacts(store, [fiction("11")])
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    ctl = await app.start(cfg, store, agi=False)  # AMI up, FastAGI down
    try:
        legal = ctl.dialer.sounds().get("legal")
        await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
        channel = store.one("SELECT channel_id FROM calls")["channel_id"]
        seen = await failsafe_times(watch, channel, {"settled", "hangup"}, 60, ctl)
        return seen["hangup"] - seen["failsafe"], seen["settled"] - seen["failsafe"], legal
    finally:
        await ctl.close()
        watch.close()


def test_outbound_failsafe_plays_the_campaigns_legal_mentions(pbx_cfg: Config) -> None:
    """A callee the controller cannot serve hears the campaign's legal mentions (who calls,
    how to object) before the clean hang-up, not dead air; the attempt stays in flight until
    that channel ends (its retry must not ring beside it), then it is `error`."""
    store = Store.memory()
    played, settled, legal = asyncio.run(_outbound_failsafe_times(pbx_cfg, store))
    assert legal and legal.startswith("ivr/") and legal.split("/")[-1].startswith("legal-")
    legal_s = load_manifest(pbx_cfg)["prompts"]["legal"]["duration_s"]
    assert legal_s - 0.5 < played < legal_s + 10
    assert played - 1 < settled < played + 2
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"], call["hangup_cause"]) == ("error", "failsafe", "41")


async def _controller_down_then_up(cfg: Config, store: Store) -> int:
    add_contacts(store, [fiction("20")])
    ctl = await app.start(cfg, store)
    await ctl.dialer.dial(store.one("SELECT * FROM contacts"))
    await ctl.close()          # the controller goes away with the call in flight
    # the failsafe plays the legal mentions, then ends it; nobody is listening. The callee's
    # 2 cuts them and they play again, still listening, with 2 s after them for a key.
    await asyncio.sleep(load_manifest(cfg)["prompts"]["legal"]["duration_s"] + 9)
    assert store.one("SELECT outcome FROM calls")["outcome"] is None
    ctl = await app.start(cfg, store)  # a new run sees the attempt and settles it
    await ctl.close()
    return len(store.open_calls())


def test_attempt_left_open_is_settled_when_the_controller_comes_back(pbx_cfg: Config) -> None:
    store = Store.memory()
    assert asyncio.run(_controller_down_then_up(pbx_cfg, store)) == 0
    call = store.one("SELECT * FROM calls")
    assert (call["outcome"], call["stage"]) == ("error", "reconciled")


async def _inbound_without_controller(cfg: Config) -> tuple[list[dict], float]:
    """A caller reaches the opposition line while no controller listens on IVR_AGI_URL: the
    events the controller's AMI user sees, and how long the line kept the caller."""
    from ivr.telephony.ami import Ami
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    events: list[dict] = []
    try:
        t0 = time.monotonic()
        await watch.action({"Action": "Originate", "Channel": f"Local/silent@{SIM_CALLER_CONTEXT}",
                            "Context": CALLBACK_CONTEXT, "Exten": CALLBACK_EXTEN,
                            "Priority": "1", "Async": "true", "Timeout": "5000",
                            "CallerID": "+33199000079", "ChannelId": "cb-failsafe"})
        while time.monotonic() - t0 < 30:
            ev = await watch.next_event(0.1)
            if ev is None:
                continue
            events.append(dict(ev))
            if ev.get("Event") == "Hangup" and ev.get("Uniqueid") == "cb-failsafe":
                break
        return events, time.monotonic() - t0
    finally:
        watch.close()


def test_opposition_line_failsafe_plays_the_legal_mentions(pbx_cfg: Config) -> None:
    events, took = asyncio.run(_inbound_without_controller(pbx_cfg))
    failsafe = [e for e in events if e.get("Event") == "UserEvent"
                and e.get("UserEvent") == EVENT_FAILSAFE]
    assert [(e.get(FAILSAFE_CALL_ID), e.get(FAILSAFE_STATUS)) for e in failsafe] == \
        [(FAILSAFE_CALLBACK, "FAILURE")]
    assert any(e.get("Event") == "Hangup" and e.get("Uniqueid") == "cb-failsafe" for e in events)
    legal_s = load_manifest(pbx_cfg)["prompts"]["legal"]["duration_s"]
    assert legal_s - 0.5 < took < 25  # the caller heard the legal mentions, then it hung up
