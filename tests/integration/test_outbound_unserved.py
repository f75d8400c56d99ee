"""The outbound failsafe when FastAGI accepts the session but does not serve the call.

A controller that accepts the TCP connection and closes it unserved (here: the PBX's address is
left out of agi.allowed_peers) makes Asterisk report AGISTATUS=SUCCESS, not FAILURE. The call
must still take [ivr-outbound]'s failsafe (UserEvent, clean Hangup(41)), so the attempt is an
`error` retried, not a callee who "hung up" (cause 16). A call the controller served to its
end (it set IVR_DONE) ends without the failsafe. A session the token gate refuses on a real
channel (an attempt the run gave up) is closed unserved too, and takes the failsafe.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store
from ivr.telephony.ami import Ami
from ivr.telephony.contract import EVENT_FAILSAFE, FAILSAFE_CALL_ID, FAILSAFE_STATUS

from .conftest import add_contacts, fiction


@contextlib.asynccontextmanager
async def _dialled(cfg: Config, store: Store, number: str) -> AsyncIterator[tuple[Any, Ami]]:
    """One attempt through the real controller, and another AMI session watching."""
    add_contacts(store, [number])
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    ctl = await app.start(cfg, store)
    try:
        await ctl.dialer.dial(store.one("SELECT * FROM contacts WHERE number = ?", (number,)))
        yield ctl, watch
    finally:
        await ctl.close()
        watch.close()


async def _one_call(cfg: Config, store: Store, number: str) -> list[tuple[Any, Any]]:
    """One attempt through the real controller; the failsafe events another AMI session saw."""
    seen: list[tuple[Any, Any]] = []
    async with _dialled(cfg, store, number) as (ctl, watch):
        t0 = time.monotonic()
        while (ctl.dialer.inflight or time.monotonic() - t0 < 1) and time.monotonic() - t0 < 60:
            ev = await watch.next_event(0.1)
            if ev is not None and ev.get("Event") == "UserEvent" and \
                    ev.get("UserEvent") == EVENT_FAILSAFE:
                seen.append((ev.get(FAILSAFE_CALL_ID), ev.get(FAILSAFE_STATUS)))
        await asyncio.sleep(1)  # the late Hangup's cause
    return seen


def test_a_session_refused_by_allowed_peers_takes_the_outbound_failsafe(pbx_cfg: Config) -> None:
    refusing = dataclasses.replace(
        pbx_cfg, agi=dataclasses.replace(pbx_cfg.agi, allowed_peers=["10.0.0.0/8"]))
    store = Store.memory()
    seen = asyncio.run(_one_call(refusing, store, fiction("30")))  # stays on the line, silent
    call = store.one("SELECT * FROM calls")
    assert seen == [(str(call["id"]), "SUCCESS")]  # Asterisk saw a finished AGI
    assert (call["outcome"], call["stage"]) == ("error", "failsafe")
    assert call["hangup_cause"] == "41"  # the failsafe's clean hang-up, not a callee's 16
    assert call["retry_at"] is not None  # nobody heard the IVR: a safe retry is planned


def test_a_call_served_to_its_end_takes_no_failsafe(pbx_cfg: Config) -> None:
    store = Store.memory()
    seen = asyncio.run(_one_call(pbx_cfg, store, fiction("60")))  # presses 9
    call = store.one("SELECT * FROM calls")
    assert seen == []
    assert (call["outcome"], call["hangup_cause"]) == ("opted_out", "16")


async def _given_up_call(cfg: Config, store: Store,
                         number: str) -> tuple[list[tuple[Any, Any]], bool]:
    """One attempt the run gives up right after its Originate (Dialer.abandon: as for a node
    gone mid-Originate), so that its real session, token and channel right, is refused as
    not in flight; the failsafe events another AMI session saw until the channel ended, and
    whether the PBX's answer (OriginateResponse) reached the dialer before it gave up."""
    seen: list[tuple[Any, Any]] = []
    async with _dialled(cfg, store, number) as (ctl, watch):
        call = store.one("SELECT id, channel_id FROM calls")
        # a callee that answers at once can beat dial()'s return on a loaded machine: its
        # answer time is then the PBX's fact, stored while the call was still in flight
        answered_first = ctl.dialer.by_call[int(call["id"])].answered
        ctl.dialer.abandon(int(call["id"]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            ev = await watch.next_event(0.1)
            if ev is None:
                continue
            if ev.get("Event") == "UserEvent" and ev.get("UserEvent") == EVENT_FAILSAFE:
                seen.append((ev.get(FAILSAFE_CALL_ID), ev.get(FAILSAFE_STATUS)))
            if ev.get("Event") == "Hangup" and ev.get("Uniqueid") == call["channel_id"]:
                break
    return seen, answered_first


def test_a_real_session_the_gate_refuses_takes_the_failsafe_not_a_silent_hangup(
        pbx_cfg: Config) -> None:
    """The person who answered hears the legal mentions (who calls, how to object). Before, the
    controller sent HANGUP to a refused session, which cut a real call off in silence."""
    store = Store.memory()
    seen, answered_first = asyncio.run(_given_up_call(pbx_cfg, store, fiction("30")))
    call = store.one("SELECT * FROM calls")  # fiction 30: silent, stays on the line
    assert seen == [(str(call["id"]), "SUCCESS")], seen
    # never admitted: the token is unspent and no IVR session marked the call answered; an
    # answer time only if the PBX's answer came before the run gave the call up
    assert call["state"] != "answered" and call["token_hash"] is not None, dict(call)
    assert (call["answered_at"] is not None) == answered_first, (dict(call), answered_first)
