"""How the dialer ends an attempt its IVR does not settle (ivr/campaign/dialer.py).

- `error`: a fault of the controller or the PBX, retried safely while attempts remain;
- an unanswered end: the Originate's reason and the hangup cause decide;
- an answered call whose IVR never reported: `error` after ANSWERED_GRACE_S;
- the run's own hang-ups (a hard stop): every call in flight at once, for a few seconds at most.

None reads the attempt's row first (that would flush the write batch, or wait on a remote
store): the store writes nothing where the attempt already has its outcome.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from ivr.callflow import outcomes
from ivr.campaign import reconcile
from ivr.campaign.nodes import InFlight, NodeState

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer

log = logging.getLogger(__name__)

ANSWERED_GRACE_S = 3.0  # an answered call whose IVR never reported is an `error` after this
HANGUP_ALL_S = 3.0      # a stop's hang-up of every call waits this long at most
RUN_HANGUP = outcomes.RUN_HANGUP  # the stage of a call the run hung up (hard stop, drain)


def expire_later(dialer: Dialer, flight: InFlight) -> None:
    dialer.clock.call_later(ANSWERED_GRACE_S, expire, dialer, flight)


def expire(dialer: Dialer, flight: InFlight) -> None:
    """An answered call hung up but no outcome arrived from the IVR: record `error` (the
    store writes nothing if the IVR's outcome is there: no read of the row first)."""
    if flight.call_id in dialer.ivr_active:  # still deciding (e.g. waiting on the node)
        expire_later(dialer, flight)
        return
    if dialer.by_call.get(flight.call_id) is flight:  # an adopted call's IVR was another's:
        # its end is known from Asterisk's side only (e.g. the failsafe's legal mentions
        # played after that controller died), as a reconciliation knows it
        flight_error(dialer, flight, "reconciled" if flight.adopted else "no-ivr-report")


def flight_error(dialer: Dialer, flight: InFlight, stage: str) -> None:
    error(dialer, flight.call_id, stage, answered=flight.answered, attempt=flight.attempt)
    dialer.finished(flight.call_id)


def error(dialer: Dialer, call_id: int, stage: str, answered: bool, attempt: int) -> None:
    """`error`: a fault of the controller or the PBX. A safe retry while attempts remain
    (`attempt`: the row's, fixed at its claim); the store writes nothing if the attempt
    already has its outcome. No read on the loop: an answered call's keys are read in the
    write itself (a worker thread on a remote store), after every write made before it."""
    stage = RUN_HANGUP if call_id in dialer.cut_by_run else stage  # why it ended
    now, retry = dialer.clock.now(), dialer.retry_at({"attempt": attempt}, "error")
    dialer.writer.write(lambda: _write_error(dialer, call_id, stage, answered, now, retry))


def _write_error(dialer: Dialer, call_id: int, stage: str, answered: bool, now: datetime,
                 retry: datetime | None) -> None:
    store = dialer.store
    if not answered:  # never answered: no answered_at, no invented cause
        store.finish_unanswered(call_id, "error", None, now, retry, stage=stage)
        return
    result = reconcile.answered_fault(store, call_id, stage)  # a choice stored stays
    if result is not None:
        store.finish_answered(call_id, result, now,
                              retry if result.outcome == "error" else None)


def unanswered(dialer: Dialer, flight: InFlight, outcome: str, cause: int | None,
               refused: bool = False) -> None:
    if dialer.by_call.get(flight.call_id) is not flight:
        return
    stage = None
    # Hung up by the run while ringing: not the number's failure, nor a no answer. A
    # refused Originate is the node's own answer, whenever it comes.
    if flight.call_id in dialer.cut_by_run and not refused and \
            not outcomes.kept_after_run_hangup(outcome):
        outcome, stage = "error", RUN_HANGUP
    now, retry = dialer.clock.now(), dialer.retry_at({"attempt": flight.attempt}, outcome)
    text = str(cause) if cause is not None else None
    dialer.writer.write(lambda: dialer.store.finish_unanswered(
        flight.call_id, outcome, text, now, retry, stage=stage))
    dialer.finished(flight.call_id)


async def hangup_all(dialer: Dialer, timeout_s: float = HANGUP_ALL_S) -> None:
    """Hang up every call in flight, all at once and for timeout_s at most: a node that
    does not answer must not hold up a stop. Each is marked the run's before any hang-up
    leaves, so whichever way its end comes (IVR, Hangup event, deadline) it reads as
    ours: a cut consent, intro or ringing call is `error`, retried; a choice is kept."""
    calls = [(ns, channel_id, flight.call_id)
             for ns in dialer.nodes.values() for channel_id, flight in ns.calls.items()]
    dialer.cut_by_run.update(call_id for _, _, call_id in calls)
    jobs = [asyncio.ensure_future(_hangup(ns, channel_id)) for ns, channel_id, _ in calls]
    if jobs:
        _, late = await asyncio.wait(jobs, timeout=timeout_s)
        for job in late:
            job.cancel()


async def _hangup(ns: NodeState, channel_id: str) -> None:
    try:
        await ns.node.hangup(channel_id)
    except Exception as exc:  # the channel may already be gone
        log.info("hangup %s on %s: %s", channel_id, ns.name, exc)
