"""Reconciliation after an AMI reconnect (issue 14): it judges the calls sent on an earlier link
(their events may have been lost), never one sent on the link that is up now. Asterisk answers
an Async Originate before its channel exists, so CoreShowChannels may not list it yet: settled
as gone, the attempt got `error` and a retry while the call went ahead, and the person was
called again after the retry delay.

The fake PBX over real AMI and FastAGI, the real AmiNode, Dialer, run loop and SQLite store.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer, no_answer
from ivr.telephony.node import NodeEvent, OriginateRequest, Reconnected

from conftest import Backend
from test_dialer import SECRET, Rig, contact, dial_all, fiction, rig
from test_run_loop import FAST, run_campaign

LAG_S = 1.0  # an Async Originate's channel exists this long after its Response


def originates_to(r: Rig, number: str) -> list[dict[str, Any]]:
    return [o for o in r.pbx.originates if number in str(o.get("Channel"))]


def dial_at_reconnect(r: Rig, number: str) -> dict[str, Any]:
    """The run's next Originate leaves between the login and the reconciliation that the
    reconnect starts (the node is up, not yet marked reconciling): its attempt is open when
    the reconciliation lists them. Returns what the test needs to look at afterwards."""
    seen: dict[str, Any] = {}
    on_event = r.dialer.on_event

    async def dial() -> None:
        _, send = await r.dialer.place(contact(r.store, number))
        assert send is not None
        await send

    def first_dial(ev: NodeEvent) -> None:
        if isinstance(ev, Reconnected) and "task" not in seen:
            seen["shown_before"] = len(r.pbx.shown)
            seen["task"] = asyncio.ensure_future(dial())  # before the reconciliation's task
        on_event(ev)
    r.dialer.on_event = first_dial  # type: ignore[method-assign]
    return seen


def test_an_originate_on_the_new_link_without_a_channel_yet_is_not_reconciled(
        backend: Backend) -> None:
    number = fiction(10)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool, int]:
        async with rig(backend, {number: answer(["1"], prompt_s=0.05)}, delays=FAST) as r:
            r.pbx.originate_lag_s = LAG_S
            seen = dial_at_reconnect(r, number)
            logins = r.pbx.logins
            r.pbx.drop()
            await r.until(lambda: r.pbx.logins > logins and "task" in seen and seen["task"].done())
            seen["task"].result()  # its own assertion (an Originate was sent) fails the test
            await r.until(lambda: not r.dialer.inflight, timeout=15)
            await r.pbx.wait_idle()
            (channel_id,) = r.pbx.calls
            # The race was run: a CoreShowChannels answered after the Originate was sent did
            # not list its channel (the reconciliation's).
            hidden = any(channel_id not in s for s in r.pbx.shown[seen["shown_before"]:])
            first = r.calls()
            await run_campaign(r)  # the run calls whoever is due, a retry included
            await r.pbx.wait_idle()
            return first, r.calls(), hidden, len(originates_to(r, number))
    first, calls, hidden, sent = asyncio.run(scenario())
    assert hidden
    (call,) = first
    assert (call["outcome"], call["stage"], call["retry_at"]) == ("message_played", "goodbye",
                                                                 None)
    assert len(calls) == 1 and sent == 1  # exactly one call to the number


def test_an_attempt_sent_on_the_old_link_whose_call_ended_unseen_is_reconciled(
        backend: Backend) -> None:
    """Sent and confirmed (not unsure) on the link that dropped; the call ended while the AMI
    was away, its events lost: the reconciliation still settles it `error`, with a retry."""
    number = fiction(71)  # rings until the Originate's timeout (0.3 s), never answers

    async def scenario() -> tuple[int, bool, dict[str, Any]]:
        async with rig(backend, {number: no_answer()}, delays=FAST) as r:
            await dial_all(r, [number])
            confirmed = r.dialer.originated
            (flight,) = r.dialer.inflight.values()
            await r.pbx.stop()  # the call goes on, its events are lost
            await r.until(lambda: not r.pbx.live)
            logins = r.pbx.logins
            await r.pbx.start()
            await r.until(lambda: r.pbx.logins > logins and not r.dialer.inflight, timeout=15)
            (call,) = r.calls()
            return confirmed, flight.unsure, call
    confirmed, unsure, call = asyncio.run(scenario())
    assert confirmed == 1 and not unsure
    assert (call["outcome"], call["stage"]) == ("error", "reconciled")
    assert call["retry_at"] is not None


def test_a_queued_originate_is_listed_once_its_channel_exists_and_links_are_counted() -> None:
    """The fake PBX's lag, as Asterisk queues an Async Originate; AmiNode.link is one more
    after each new login."""
    async def scenario() -> tuple[int, set[str], set[str], int]:
        async with FakePbx({fiction(71): no_answer()}, user="ivr", secret=SECRET) as pbx:
            pbx.originate_lag_s = LAG_S
            node = AmiNode("n1", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            await node.connect(timeout=3)
            first = node.link
            await node.originate(OriginateRequest(
                channel=f"Local/{fiction(71)}@ivr-sim", channel_id="ivr-q1", caller_id="+3310",
                timeout_ms=300, context="ivr-outbound", exten="s"))
            queued = await node.channels()
            await asyncio.sleep(LAG_S + 0.1)
            made = await node.channels()
            pbx.drop()
            async with asyncio.timeout(10):
                while node.link == first or not node.up:
                    await asyncio.sleep(0.02)
            again = node.link
            node.close()
            await pbx.wait_idle()
            return first, queued, made, again
    first, queued, made, again = asyncio.run(scenario())
    assert queued == set() and made == {"ivr-q1", "ivr-q1-2"}
    assert (first, again) == (0, 1)
