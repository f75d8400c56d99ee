"""The pool's watch: a node whose Asterisk died, and attempts orphaned by another controller.

- A node whose AMI link is down and whose AMI port refuses connections has lost its process,
  and every channel with it: its calls get `error` and a retry at once (the run places new
  calls on the other nodes meanwhile), instead of waiting for their deadline. The node
  rejoins when its AMI reconnects (the reconciliation of dialer.py runs then, as after a drop).
- About every ORPHANS_S, the attempts of a controller whose lease expired
  (`store.orphaned_calls`) are settled as `error` with the retry delay of the outcome table,
  unless the call's channel is still up on one of our nodes: then it is adopted, as the
  reconciliation adopts a live channel, and waited for. One on our node that is down waits
  for it (a hung Asterisk may still place its Originate when it recovers).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ivr.campaign.nodes import NodeState
from ivr.telephony.node import ChannelListing

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer

log = logging.getLogger(__name__)
POLL_S = 0.25     # how often the nodes' links are looked at (cheap: a flag per node)
DEAD_AFTER_S = 1.0  # a link down this long gets its port probed
PROBE_EVERY_S = 1.0
ORPHANS_S = 5.0   # how often the store is asked for attempts of expired controllers
NODE_TIMEOUT_S = 5.0


async def watch(dialer: Dialer) -> None:
    """For as long as the dialer lives; a failure is logged and tried again next time."""
    next_orphans = dialer.clock.monotonic() + ORPHANS_S
    told = False  # the store's failure said, once per outage (the run says it is away too)
    while True:
        await dialer.clock.sleep(POLL_S)
        now = dialer.clock.monotonic()
        for ns in list(dialer.nodes.values()):
            try:
                await check_node(dialer, ns, now)
            except Exception as exc:
                log.warning("watch of node %s failed (%s)", ns.name, exc)
        if now >= next_orphans:
            next_orphans = now + ORPHANS_S
            try:
                await settle_orphans(dialer)
                told = False
            except Exception as exc:  # the store away: asked again next time
                (log.debug if told else log.warning)(
                    "orphaned attempts not settled (%s): trying again every %g s", exc,
                    ORPHANS_S)
                told = True


async def check_node(dialer: Dialer, ns: NodeState, now: float) -> None:
    """Note when the node went down; once its process is gone, settle its calls."""
    if ns.node.up:
        ns.down_since, ns.lost, ns.told_down = None, False, False
        return
    down_for = ns.down_for(now)
    if ns.calls and not ns.told_down:  # once per outage: the node the run now waits on
        ns.told_down = True
        log.warning("node %s is down with %d call(s) in flight: waiting for it; past their "
                    "deadline (at most %.0f s) the run stops waiting (those it placed settled "
                    "as error and retried, the others left for its reconciliation)",
                    ns.name, len(ns.calls), dialer.deadline_s)
    if ns.lost or down_for < DEAD_AFTER_S or not ns.calls or now < ns.next_probe:
        return
    ns.next_probe = now + PROBE_EVERY_S  # a listening port that will not log us in: not often
    gone = getattr(ns.node, "gone", None)
    if gone is not None and await gone():
        ns.lost = True  # once per outage; the reconnect's reconciliation does the rest
        settle_lost(dialer, ns)


def settle_lost(dialer: Dialer, ns: NodeState) -> int:
    """Every call of a dead node ends as `error`, retried (on another node: the run picks
    ready nodes only); an IVR session still running records its own outcome."""
    settled = 0
    for flight in list(ns.calls.values()):
        if flight.call_id in dialer.ivr_active:
            continue
        dialer.settle_error(flight.call_id, "node-lost", answered=flight.answered,
                            attempt=flight.attempt)
        dialer.finished(flight.call_id)
        settled += 1
    if settled:
        log.warning("node %s is gone (AMI port closed): %d call(s) settled as error, retried",
                    ns.name, settled)
    return settled


async def settle_orphans(dialer: Dialer) -> int:
    """Attempts of a controller whose lease expired: adopt the live ones, settle the rest."""
    store = dialer.store
    if store.controller_id is None:  # not a registered controller (no hold_run): not ours
        return 0                     # to judge who else is alive
    dialer.writer.flush()
    now = dialer.clock.now()
    calls: list[dict[str, Any]] = await dialer.off_loop(store.orphaned_calls,
                                                        dialer.cfg.campaign.name, now)
    if not calls:
        return 0
    live = await _live_channels(dialer, {str(c.get("node") or "") for c in calls})
    settled = 0
    for call in calls:
        if int(call["id"]) in dialer.by_call:
            continue  # ours already (adopted earlier)
        ns = dialer.nodes.get(str(call.get("node") or ""))
        if ns is not None and not ns.lost:
            if ns.name not in live:
                # our node, down for now: never settled on a guess. Its Asterisk may be hung
                # with this attempt's Originate unread in its socket, and place the call when
                # it recovers: a retry would dial the number twice. Its reconciliation settles it.
                continue
            if call["channel_id"] in live[ns.name].live:
                dialer.adopt(ns, call,
                             answered_before=call["channel_id"] in live[ns.name].answered)
                continue
        dialer.settle_error(int(call["id"]), "orphaned",
                            answered=call.get("answered_at") is not None,
                            attempt=int(call["attempt"]))
        dialer.announce(int(call["id"]))  # its outcome's hooks: the webhook posts it
        settled += 1
    if settled:
        log.warning("%d attempt(s) of a controller whose lease expired settled as error",
                    settled)
    return settled


async def _live_channels(dialer: Dialer, names: set[str]) -> dict[str, ChannelListing]:
    """The live channels of each of our nodes, up now, that the orphans were placed on."""
    live: dict[str, ChannelListing] = {}
    for name in names:
        ns = dialer.nodes.get(name)
        if ns is None or not ns.node.up:
            continue
        try:
            live[name] = await asyncio.wait_for(ns.node.listing(), NODE_TIMEOUT_S)
        except Exception as exc:  # its orphans wait for the next round
            log.info("channels of %s not read (%s)", name, exc)
    return live
