"""The dialplan's failsafe (UserEvent IvrFailsafe) settles only the call whose channel raised it.

Two campaigns may share one PBX, each with its own store and controller: call ids start at 1 in
every store, and each controller reads every UserEvent of the PBX. Before, a failsafe was
matched on its CallId alone: campaign B's controller killed mid-call made A's live calls 1..3
`error`/failsafe, their IVR results were then refused and the same people called again. Now
the event's Uniqueid (Asterisk stamps it on every UserEvent) must be the flight's channel id, on
the flight's node. Through the fake PBX's real AMI and the real AmiNode, on both stores.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ivr.telephony.contract import EVENT_FAILSAFE, FAILSAFE_CALL_ID, FAILSAFE_STATUS
from ivr.telephony.fake_pbx import answer
from ivr.telephony.node import Failsafe

from conftest import Backend
from test_dialer import Rig, contact, fiction, rig

NUMBER = fiction(10)


def failsafe(call_id: Any, uniqueid: str | None) -> dict[str, Any]:
    """The UserEvent as Asterisk sends it for [ivr-outbound]'s failsafe."""
    ev = {"Event": "UserEvent", "Privilege": "user,all", "UserEvent": EVENT_FAILSAFE,
          FAILSAFE_CALL_ID: str(call_id), FAILSAFE_STATUS: "FAILURE",
          "Channel": "Local/+33199000099@ivr-sim-00000007;1"}
    return ev if uniqueid is None else ev | {"Uniqueid": uniqueid}


async def _answered(r: Rig) -> Any:
    """Dial NUMBER (it listens to the whole message, slowly) and wait for its answer."""
    await r.dialer.dial(contact(r.store, NUMBER))
    await r.until(lambda: any(f.answered for f in r.dialer.by_call.values()))
    (flight,) = r.dialer.by_call.values()
    return flight


def _run(backend: Backend, inject: Any) -> dict[str, Any]:
    """One call of this campaign; `inject(rig, flight)` while its IVR plays; its row."""
    async def scenario() -> dict[str, Any]:
        async with rig(backend, {NUMBER: answer(["1"], prompt_s=0.3)}) as r:
            flight = await _answered(r)
            inject(r, flight)
            await r.until(lambda: not r.dialer.inflight)
            (call,) = r.calls()
            return call
    return asyncio.run(scenario())


def test_another_campaigns_failsafe_with_the_same_call_id_settles_nothing(
        backend: Backend) -> None:
    def other_campaign(r: Rig, flight: Any) -> None:  # B's call 1: B's own tag and salt
        r.pbx._emit(failsafe(flight.call_id, f"ivr-0badc0de-{flight.call_id}-12345678"))
    call = _run(backend, other_campaign)
    assert (call["outcome"], call["stage"]) == ("message_played", "goodbye"), call
    assert call["retry_at"] is None  # nobody is called again


def test_its_own_channels_failsafe_still_settles_it(backend: Backend) -> None:
    def own(r: Rig, flight: Any) -> None:
        r.pbx._emit(failsafe(flight.call_id, flight.channel_id))
    call = _run(backend, own)
    assert (call["outcome"], call["stage"]) == ("error", "failsafe"), call


def test_a_failsafe_without_its_channel_is_ignored_with_one_warning(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    def old_shape(r: Rig, flight: Any) -> None:  # twice: one WARNING for the run
        r.pbx._emit(failsafe(flight.call_id, None))
        r.pbx._emit(failsafe(flight.call_id, None))
    with caplog.at_level(logging.WARNING, logger="ivr.campaign.node_events"):
        call = _run(backend, old_shape)
    assert call["outcome"] == "message_played", call
    told = [r for r in caplog.records if "IvrFailsafe" in r.getMessage()]
    assert len(told) == 1 and "dialplans/ivr-outbound.conf" in told[0].getMessage()


def test_a_failsafe_from_another_node_settles_nothing(backend: Backend) -> None:
    def elsewhere(r: Rig, flight: Any) -> None:  # the same channel id, reported by another node
        r.dialer.on_event(Failsafe("other-node", flight.call_id, "FAILURE", flight.channel_id))
    call = _run(backend, elsewhere)
    assert call["outcome"] == "message_played", call
