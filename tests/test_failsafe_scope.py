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

from ivr.telephony import ami_node
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.contract import (EVENT_FAILSAFE, FAILSAFE_CALL_ID, FAILSAFE_CALLBACK,
                                    FAILSAFE_STATUS)
from ivr.telephony.fake_pbx import FakePbx, answer
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
    """At the channel's Hangup, which follows the legal mentions the failsafe plays: until
    then the number stays in flight (its retry must not ring beside it)."""
    seen: dict[str, Any] = {}

    def own(r: Rig, flight: Any) -> None:
        r.pbx._emit(failsafe(flight.call_id, flight.channel_id))
        asyncio.get_running_loop().call_later(0.2, hang_up, r, flight)

    def hang_up(r: Rig, flight: Any) -> None:
        seen["in flight before its Hangup"] = flight.call_id in r.dialer.by_call
        r.pbx._emit({"Event": "Hangup", "Privilege": "call,all", "Uniqueid": flight.channel_id,
                     "Channel": f"Local/{NUMBER}@ivr-sim-00000007;1", "ChannelState": "6",
                     "Linkedid": flight.channel_id, "Cause": "41",
                     "Cause-txt": "Temporary failure"})
    call = _run(backend, own)
    assert seen == {"in flight before its Hangup": True}
    assert (call["outcome"], call["stage"], call["hangup_cause"]) == ("error", "failsafe", "41")


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


# -- the opposition line's failsafe (CallId: callback): said to the admin, never dropped --------
def callback_failsafe(status: str) -> dict[str, Any]:
    return {"Event": "UserEvent", "Privilege": "user,all", "UserEvent": EVENT_FAILSAFE,
            FAILSAFE_CALL_ID: FAILSAFE_CALLBACK, FAILSAFE_STATUS: status,
            "Channel": "PJSIP/carrier-00000003", "Uniqueid": "1764800000.7"}


async def _node_reads(events: list[dict[str, Any]]) -> list[Any]:
    """The node events an AmiNode yields for `events`, sent by the fake PBX's AMI."""
    async with FakePbx({}, user="ivr", secret="s") as pbx:
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", "s")
        await node.connect()
        try:
            for ev in events + [{"Event": "Hangup", "Uniqueid": "end", "Cause": "16"}]:
                pbx._emit(ev)
            seen: list[Any] = []
            async for typed in node.events():
                seen.append(typed)
                if getattr(typed, "channel_id", "") == "end":
                    return seen
        finally:
            node.close()
    return []


def test_the_opposition_lines_failsafe_is_an_error_saying_what_to_check(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="ivr.telephony.ami_node"):
        typed = asyncio.run(_node_reads([callback_failsafe("FAILURE")] * 3))
    assert [type(t).__name__ for t in typed] == ["ChannelHangup"]  # the dialer is not told
    # once, not 3 times; the 2 counted after it said at the node's close
    told, closing = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed 2 caller" in closing.getMessage()
    text = told.getMessage()
    assert "could not reach the controller's FastAGI" in text and "IVR_AGI_URL" in text
    assert "`ivr serve`/`ivr run` is listening" in text and "failed 1 caller" in text


def test_the_opposition_alarm_is_said_again_after_its_quiet_time(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    alarm = ami_node.OppositionAlarm("pbx", every_s=600, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="ivr.telephony.ami_node"):
        alarm.seen("")          # IVR_AGI_URL unset: no AGI ran
        now[0] = 300
        alarm.seen("SUCCESS")   # within the quiet time: counted, not said
        now[0] = 601
        alarm.seen("SUCCESS")   # the controller closed it unserved
    first, second = (r.getMessage() for r in caplog.records)
    assert "failed 1 caller" in first and "IVR_AGI_URL or IVR_CALLBACK_SECRET is not set" in first
    assert "failed 2 caller" in second and "closed the opposition line's session" in second


def test_failures_counted_in_the_quiet_time_are_said_at_the_close(
        caplog: pytest.LogCaptureFixture) -> None:
    """Six failed callers in 5 minutes, then none: the five counted after the first line are
    said when the node closes (before: never, the count waited for a seventh failure)."""
    now = [0.0]
    node = ami_node.AmiNode("pbx", "127.0.0.1", 9, "ivr", "secret")
    node.opposition = ami_node.OppositionAlarm("pbx", every_s=600, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="ivr.telephony.ami_node"):
        for i in range(6):
            now[0] = 50.0 * i
            node.opposition.seen("FAILURE")
        node.close()
        node.close()  # said once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "failed 1 caller" in lines[0] and "told again in 10 min at most" in lines[0]
    assert "failed 5 caller" in lines[1] and "the run is ending" in lines[1]
