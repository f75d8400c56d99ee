"""Reconciliation: after a restart or a reconnect, the dialer asks a node for its live
channels, adopts the open attempts still up there and settles those that are gone as `error`.
Per node, per campaign and per controller: other nodes' attempts, other campaigns' runs sharing
the node and the store, and another live controller's calls are never touched (issue 14); nor
are our calls sent on the link that answers: Asterisk answers an Async Originate before its
channel exists, so its absence from CoreShowChannels says nothing, and that link's own events
report what becomes of it."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ivr.callflow import outcomes
from ivr.campaign import optout_journal
from ivr.campaign.nodes import InFlight, NodeState
from ivr.errors import PbxError
from ivr.store.base import CallResult

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer
    from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
RETRY_S = 2.0  # a failed reconciliation (link dropped again, PBX booting) is tried again


async def every_node(dialer: Dialer) -> int:
    """At start: the nodes that answer (one down joins later, reconciled when it does). One
    whose reconciliation fails (a hung Asterisk, its link dropped) no longer stops the run
    while another node reconciled: it is tried again apart, as after a reconnect (before, one
    bad node of a pool aborted `ivr run`). All of them failing still stops the start."""
    settled, failed = 0, []
    up = [ns for ns in dialer.nodes.values() if ns.node.up]
    for ns in up:
        try:
            settled += await node(dialer, ns)
        except PbxError as exc:
            failed.append((ns, exc))
    if failed and len(failed) == len(up):
        raise failed[0][1]
    for ns, exc in failed:
        log.warning("node %s: reconciliation at start failed (%s): the run starts on the "
                    "other nodes; it is reconciled again %s", ns.name, exc,
                    "shortly" if ns.node.up else "when it answers")
        if ns.node.up:  # down: its reconnect reconciles it (node_events.on_reconnected)
            soon(dialer, ns, dialer._tasks)
    return settled


async def node(dialer: Dialer, ns: NodeState) -> int:
    """Oppose the people its failsafes journaled (campaign/optout_journal.py), adopt its live
    channels, settle its attempts that are gone. Nothing is originated here."""
    ns.reconciling = True  # no call is placed on this node meanwhile
    try:
        # People who objected while no controller served them: opposed before any call is
        # placed on this node. A failure (link, store) is tried again apart: the node's
        # reconciliation, and the run's start, go on without it.
        await optout_journal.drain_or_retry(dialer, ns)
        # Only attempts that existed before asking the node: a newer one may be missing
        # from the answer and must not be taken for gone.
        dialer.writer.flush()
        # This campaign's only: another campaign's run shares the node and the store. And
        # this controller's (issue 14): another live controller's queued Originate is absent
        # from CoreShowChannels too; a dead one's (stopped, lease expired) are ours to settle.
        open_calls = await dialer.off_loop(dialer.store.open_calls, ns.name,
                                           dialer.cfg.campaign.name,
                                           getattr(dialer.store, "controller_id", None))
        link = ns.node.link  # the link CoreShowChannels goes out, and is answered, on
        # Less those whose Hangup the event pump read meanwhile (a reconnect's or a join's
        # reconciliation runs beside it): listed before they ended, adopted they would wait
        # for their deadline
        listing = await ns.node.listing()
        live = set(listing.live) - ns.ended_while_reconciling
        return await _settle(dialer, ns, open_calls, live, link, listing.answered)
    finally:
        ns.reconciling = False
        ns.ended_while_reconciling.clear()


async def _settle(dialer: Dialer, ns: NodeState, open_calls: list[dict[str, Any]],
                  live: set[str], link: int, up: frozenset[str] = frozenset()) -> int:
    settled = 0
    for call in open_calls:
        if _one(dialer, ns, call, call["channel_id"] in live, link, up):
            settled += 1
    for channel_id, flight in list(ns.calls.items()):  # settled meanwhile
        if channel_id in live:
            continue
        row = await dialer.read_call(flight.call_id)  # off the loop on a remote store
        if row is not None and row["outcome"] and dialer.by_call.get(flight.call_id) is flight:
            dialer.finished(flight.call_id)
    return settled


def _one(dialer: Dialer, ns: NodeState, call: dict[str, Any], alive: bool, link: int,
         up: frozenset[str] = frozenset()) -> bool:
    """Adopt one open attempt (True when it was settled as gone)."""
    channel_id, call_id = call["channel_id"], int(call["id"])
    flight = ns.calls.get(channel_id)
    if alive:
        adopt(dialer, ns, call, link, answered_before=channel_id in up)
        return False
    if flight is not None and not flight.unsure and flight.link in (None, link):
        # Sent on this link (or about to be, None): no event of it was lost, and its channel
        # may not exist yet. Its events settle it; past its deadline, the deadline watch does.
        return False
    if flight is not None and flight.answered and not flight.unsure:
        dialer._expire_later(flight)  # its IVR gets its grace period first
        return False
    dialer.settle_error(call_id, "reconciled", answered=call["answered_at"] is not None or
                        (flight is not None and flight.answered), attempt=int(call["attempt"]))
    if flight is not None:
        dialer.finished(call_id)
    else:  # an earlier run's, another controller's, one left open while its node hung:
        dialer.announce(call_id)  # its outcome's hooks (webhooks send each call once)
    return True


def answered_fault(store: Store, call_id: int, stage: str) -> CallResult | None:
    """How an answered call that no IVR result settled (controller killed, link lost, PBX gone)
    ends: a refusal or an opposition stored the moment its key was pressed (record_choice),
    or a consent stored once its message and legal mentions were heard (message_played),
    stays its outcome, final, its proof row already there (outcomes.kept_choice), the stage
    naming the cut; anything else is `error`, retried. Runs in the write itself, after every
    write made before it. None: no such call."""
    call = store.call(call_id)
    if call is None:
        return None
    kept = outcomes.kept_choice(store.choices_of(call_id))
    return CallResult(outcome=kept or "error", stage=stage, keys=call["keys"] or "", heard={})


def adopt(dialer: Dialer, ns: NodeState, call: dict[str, Any],
          link: int | None = None, answered_before: bool = False) -> InFlight:
    """A live channel of an open attempt (an earlier run's, another controller's): waited
    for and settled like our own calls. `link`: the one that listed it (default: the
    current), whose events now report its end; after another drop it is judged again.
    `answered_before`: the node listed it answered. Its FastAGI session, which opens once,
    then went to whoever listened on agi.port meanwhile (a process that took the port while
    no controller did): no session is admitted for it, since the token that process took,
    replayed to us, recorded a consent the callee never gave. Judged on the channel's state,
    not on what it runs (an AGI's EXEC, or the failsafe's Playback, shows another name). A
    call answered between our listening and its adoption (AMD still listening) loses its
    IVR too: the failsafe's legal mentions, then a retry."""
    flight = ns.calls.get(call["channel_id"])
    if flight is None:
        flight = InFlight(int(call["id"]), call["channel_id"], call["number"], ns.name,
                          answered=call["answered_at"] is not None,
                          deadline=dialer.clock.monotonic() + dialer.deadline_s,
                          attempt=int(call["attempt"]), adopted=True,
                          session_opened=answered_before)
        if answered_before:
            log.warning("call %s on %s: adopted after its answer, its FastAGI session "
                        "already gone to whoever listened then: none is admitted for it; "
                        "it ends `error`, retried", flight.call_id, ns.name)
        ns.add(flight)
        dialer.by_call[flight.call_id] = flight
        dialer.idle.clear()
    flight.unsure = False
    flight.link = ns.node.link if link is None else link
    return flight


def soon(dialer: Dialer, ns: NodeState, tasks: set[asyncio.Task]) -> None:
    """After a reconnect; a failure is logged and tried again, never lost in a task, until
    the dialer is closed."""
    if dialer.closed:
        return

    async def attempt() -> None:
        try:
            await node(dialer, ns)
        except Exception as exc:  # link dropped again, PBX still booting: retry shortly
            if dialer.closed:
                return
            log.warning("reconciliation of %s failed (%s): retrying", ns.name, exc)
            dialer.clock.call_later(RETRY_S, soon, dialer, ns, tasks)
    task = asyncio.get_running_loop().create_task(attempt())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
