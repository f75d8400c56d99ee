"""The opposition line's failsafe when FastAGI answers but does not serve the call.

A controller that accepts the TCP connection and closes it unserved (here: the PBX's address is
not in agi.allowed_peers) makes Asterisk report AGISTATUS=SUCCESS, not FAILURE. The caller must
still hear the legal mentions, and the controller must say at WARNING which key to fix. A session
the controller did serve ends without the failsafe.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import pytest

from ivr import app
from ivr.config import Config
from ivr.prompts.build import load_manifest
from ivr.store.sqlite import Store
from ivr.telephony.contract import (CALLBACK_CONTEXT, CALLBACK_EXTEN, EVENT_FAILSAFE,
                                    FAILSAFE_CALL_ID, FAILSAFE_CALLBACK, FAILSAFE_STATUS,
                                    SIM_CALLER_CONTEXT)


async def _call_the_line(cfg: Config, channel_id: str) -> tuple[list[dict], float]:
    """A silent caller on the opposition line while a controller runs with `cfg`: the events
    a separate AMI session sees until the caller's hangup, and how long the line kept them."""
    from ivr.telephony.ami import Ami
    ctl = await app.start(cfg, Store.memory())
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    events: list[dict] = []
    try:
        t0 = time.monotonic()
        await watch.action({"Action": "Originate", "Channel": f"Local/silent@{SIM_CALLER_CONTEXT}",
                            "Context": CALLBACK_CONTEXT, "Exten": CALLBACK_EXTEN,
                            "Priority": "1", "Async": "true", "Timeout": "5000",
                            "CallerID": "+33199000076", "ChannelId": channel_id})
        while time.monotonic() - t0 < 40:
            ev = await watch.next_event(0.1)
            if ev is None:
                continue
            events.append(dict(ev))
            if ev.get("Event") == "Hangup" and ev.get("Uniqueid") == channel_id:
                break
        return events, time.monotonic() - t0
    finally:
        watch.close()
        await ctl.close()


def _failsafes(events: list[dict]) -> list[tuple[str | None, str | None]]:
    return [(e.get(FAILSAFE_CALL_ID), e.get(FAILSAFE_STATUS)) for e in events
            if e.get("Event") == "UserEvent" and e.get("UserEvent") == EVENT_FAILSAFE]


def test_a_pbx_missing_from_allowed_peers_still_gives_the_legal_mentions(
        pbx_cfg: Config, caplog: pytest.LogCaptureFixture) -> None:
    refusing = dataclasses.replace(
        pbx_cfg, agi=dataclasses.replace(pbx_cfg.agi, allowed_peers=["10.0.0.0/8"]))
    with caplog.at_level(logging.WARNING, logger="ivr.telephony.fastagi"):
        events, took = asyncio.run(_call_the_line(refusing, "cb-refused"))
    assert any(e.get("Event") == "Hangup" and e.get("Uniqueid") == "cb-refused" for e in events)
    # Asterisk saw a finished AGI: SUCCESS, and the dialplan took its failsafe all the same.
    assert _failsafes(events) == [(FAILSAFE_CALLBACK, "SUCCESS")]
    legal_s = load_manifest(pbx_cfg)["prompts"]["legal"]["duration_s"]
    assert legal_s - 0.5 < took < 25  # the caller heard the legal mentions, then it hung up
    told = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and r.name == "ivr.telephony.fastagi"]
    assert len(told) == 1, told
    assert "127.0.0.1" in told[0] and "agi.allowed_peers" in told[0]


def test_a_served_session_ends_without_the_failsafe(pbx_cfg: Config) -> None:
    """The controller says it served the caller (the notice, then no key): no failsafe."""
    events, took = asyncio.run(_call_the_line(pbx_cfg, "cb-served"))
    assert any(e.get("Event") == "Hangup" and e.get("Uniqueid") == "cb-served" for e in events)
    assert _failsafes(events) == []
    assert took < 30
