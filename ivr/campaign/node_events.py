"""The dialer's typed node events (ivr/telephony/node.py): each settles or marks the attempt it
names. `Dialer.on_event` dispatches to them; an answered call is left to its IVR, a failed one
is settled once the hangup's cause that explains it has come (or CAUSE_GRACE_S later)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from ivr.callflow.dispositions import no_cause, unanswered_outcome
from ivr.campaign import optout_journal
from ivr.campaign.nodes import InFlight, LineHold
from ivr.telephony.node import (ChannelHangup, ChannelHold, Failsafe, OptoutsJournaled,
                                OriginateResult, Reconnected)

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer

log = logging.getLogger(__name__)
CAUSE_GRACE_S = 1.0     # wait this long for a Hangup cause after a vague failed Originate
PBX_RINGING = "pbx-ringing"  # the stage (`error`) of a ringing call the PBX's going down ended


def _flight(dialer: Dialer, node: str, channel_id: str) -> InFlight | None:
    ns = dialer.nodes.get(node)
    return ns.calls.get(channel_id) if ns is not None else None


def on_result(dialer: Dialer, ev: OriginateResult) -> None:
    flight = _flight(dialer, ev.node, ev.channel_id)
    if flight is None:
        return
    if ev.success:
        # OriginateResponse Success comes at the answer; the AGI starts later (after AMD)
        flight.answered = True
        call_id, at = flight.call_id, dialer.clock.now()
        dialer.writer.write(lambda: dialer.store.record_answer(call_id, at))
        if flight.hung_up:  # the hangup came first: still give the IVR its grace
            dialer._expire_later(flight)
        return
    flight.failed, flight.reason = True, ev.reason
    if flight.hung_up and flight.cause is not None:
        settle_failed(dialer, flight)
    else:  # the hangups carry the cause that explains the failure
        flight.settle = dialer.clock.call_later(CAUSE_GRACE_S, settle_failed, dialer, flight)


def on_hangup(dialer: Dialer, ev: ChannelHangup) -> None:
    if ev.callee_half:  # its cause is the one that explains a failed call
        on_callee_hangup(dialer, ev)
        return
    ns = dialer.nodes.get(ev.node)
    if ns is not None and ns.reconciling:
        ns.ended_while_reconciling.add(ev.channel_id)
    flight = _flight(dialer, ev.node, ev.channel_id)
    if flight is None:  # already settled by the IVR: keep the real cause
        if ev.cause and ev.channel_id.startswith("ivr-") and \
                not dialer.stored_causes.settled_without_write(ev.channel_id, str(ev.cause)):
            cause, uid, campaign = str(ev.cause), ev.channel_id, dialer.cfg.campaign.name
            dialer.writer.write(lambda: dialer.store.set_hangup_cause_by_channel(
                uid, cause, campaign))  # another campaign's run shares the PBX
        return
    flight.cause = flight.cause or ev.cause or None
    flight.hung_up = True
    if flight.hold is not None:  # an IVR waiting for the Unhold stops waiting
        flight.hold.end()
    if flight.failsafe:  # its legal mentions played: the failsafe's `error`, then the cause
        dialer._settle_error(flight, "failsafe")  # (an unanswered settle writes no cause)
        _write_cause(dialer, flight)
    elif flight.failed and flight.cause is not None:
        settle_failed(dialer, flight)
    elif flight.answered:
        _write_cause(dialer, flight)
        dialer._expire_later(flight)
    elif flight.adopted:  # an earlier run's call, its answer maybe never stored (killed
        # before its write): that OriginateResponse went to the dead run and none will come
        # here, so only the deadline would end it. One still ringing gets its Failure first.
        dialer._expire_later(flight)


def _write_cause(dialer: Dialer, flight: InFlight) -> None:
    if flight.cause is not None:
        call_id, cause = flight.call_id, str(flight.cause)
        dialer.writer.write(lambda: dialer.store.set_hangup_cause(call_id, cause))


def on_callee_hangup(dialer: Dialer, ev: ChannelHangup) -> None:
    flight = _flight(dialer, ev.node, ev.channel_id)
    if flight is not None and flight.hold is not None:  # the callee left while on hold
        flight.hold.end()
    if flight is not None and ev.cause:
        flight.cause = ev.cause
        if flight.failed and flight.hung_up:
            settle_failed(dialer, flight)


def on_failsafe(dialer: Dialer, ev: Failsafe) -> None:
    """Settles the attempt whose own channel took the failsafe, and no other: the event's
    Uniqueid is the flight's channel id on the flight's node. Another campaign's controller
    on the same PBX numbers its calls from 1 too, and its failsafes reach us as well."""
    if not ev.channel_id:
        _warn_once(dialer, "an IvrFailsafe event without the channel that raised it was "
                   "ignored: raise it from the call's channel, as dialplans/ivr-outbound.conf "
                   "does (include that file unchanged)")
        return
    flight = _flight(dialer, ev.node, ev.channel_id)
    if flight is None or (ev.call_id is not None and ev.call_id != flight.call_id):
        log.debug("failsafe of %s on %s (call %s) is not one of ours: ignored",
                  ev.channel_id, ev.node, ev.call_id)
        return
    if dialer.by_call.get(flight.call_id) is flight:
        # Counted per node (node_guard.py): FastAGI unreachable fails every answered call
        dialer.node_guard.failsafe(flight, dialer.agi_url)
        if flight.hung_up:
            dialer._settle_error(flight, "failsafe")
        else:  # the legal mentions play first: settled at its Hangup (on_hangup), not now,
            flight.failsafe = True  # else its retry could ring while this channel still lives


_warned: WeakKeyDictionary[Dialer, set[str]] = WeakKeyDictionary()


def _warn_once(dialer: Dialer, message: str) -> None:
    """A WARNING once per run (per dialer), not once per call."""
    told = _warned.setdefault(dialer, set())
    if message not in told:
        told.add(message)
        log.warning(message)


def on_hold(dialer: Dialer, ev: ChannelHold) -> None:
    """The callee's line on hold or back: kept on the flight for its IVR (agi_ivr.py). A call
    never held gets no LineHold."""
    flight = _flight(dialer, ev.node, ev.channel_id)
    if flight is None:
        return
    if flight.hold is None:
        if not ev.held:
            return
        flight.hold = LineHold()
    if ev.held:
        flight.hold.hold()
    else:
        flight.hold.unhold()


def on_reconnected(dialer: Dialer, ev: Reconnected) -> None:  # events were missed while down
    ns = dialer.nodes.get(ev.node)
    if ns is not None:
        dialer._reconcile_soon(ns)


def on_journaled(dialer: Dialer, ev: OptoutsJournaled) -> None:
    """A failsafe journaled an opposition (no controller served the call)."""
    ns = dialer.nodes.get(ev.node)
    if ns is not None:
        optout_journal.soon(dialer, ns)


_checking: WeakKeyDictionary[Dialer, set[str]] = WeakKeyDictionary()


def settle_failed(dialer: Dialer, flight: InFlight) -> None:
    """A failed Originate's outcome. One with no cause may be the PBX going down (a shutdown
    or restart tears ringing calls down with cause 0 and Reason 0): asked first, as the IVR
    asks for an answered call's cut (agi_ivr.py)."""
    if dialer.by_call.get(flight.call_id) is not flight:
        return
    if no_cause(flight.reason, flight.cause) and flight.call_id not in dialer.cut_by_run:
        checking = _checking.setdefault(dialer, set())
        if flight.channel_id not in checking:  # one check per attempt, whoever asks again
            checking.add(flight.channel_id)
            task = asyncio.ensure_future(_settle_no_cause(dialer, flight, checking))
            dialer._tasks.add(task)
            task.add_done_callback(dialer._tasks.discard)
        return
    _settle_as_told(dialer, flight)


def _settle_as_told(dialer: Dialer, flight: InFlight) -> None:
    dialer._settle_unanswered(flight, unanswered_outcome(flight.reason, flight.cause),
                              flight.cause)


async def _settle_no_cause(dialer: Dialer, flight: InFlight, checking: set[str]) -> None:
    try:
        down = await dialer.pbx_went_down(node=flight.node)
    finally:
        checking.discard(flight.channel_id)
    if dialer.by_call.get(flight.call_id) is not flight:  # settled meanwhile (reconciled)
        return
    if not down:
        _settle_as_told(dialer, flight)  # retried, and counted by the carrier breaker
        return
    # The PBX ended it, not the carrier nor the callee: `error`, retried (README, Faults),
    # and no breaker count (a pool's restart would end dozens of ringing calls at once).
    flight.failed = False
    dialer._settle_error(flight, PBX_RINGING)
    dialer.pbx_fault()


HANDLERS: dict[type, Callable[[Dialer, Any], None]] = {
    OriginateResult: on_result, ChannelHangup: on_hangup,
    Failsafe: on_failsafe, Reconnected: on_reconnected, ChannelHold: on_hold,
    OptoutsJournaled: on_journaled}
