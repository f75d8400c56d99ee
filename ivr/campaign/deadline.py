"""How long a call can possibly last, and the watch that settles calls past their deadline.

A controller never waits forever for a call it cannot see (issue 17): events lost, an IVR
that never reported, a call another controller serves. Each call in flight gets a deadline,
the longest possible call plus a margin; past it the dialer asks the node for its channels and
settles the call (`error`, stage `deadline`, retried), hanging it up first if it still lives.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ivr.config import Config

if TYPE_CHECKING:  # the dialer imports this module
    from ivr.campaign.dialer import Dialer
    from ivr.campaign.nodes import InFlight, NodeState

log = logging.getLogger(__name__)
AMD_MAX_S = 10.0      # AMD() decides within its totalAnalysisTime (5 s by default)
MARGIN_S = 30.0       # AGI round trips, the IVR's checks after a hangup, the dialer's graces
POLL_S = 1.0          # how often the watch looks for overdue calls
NODE_TIMEOUT_S = 5.0  # a node that does not answer within this is asked again next time


def longest_call_s(cfg: Config, durations: Mapping[str, float]) -> float:
    """Ring timeout + the longest path through the flow + a margin. `durations`: seconds per
    prompt (the manifest); a prompt missing from it counts as prompts.max_duration_s."""
    def d(prompt: str) -> float:
        return float(durations.get(prompt, cfg.prompts.max_duration_s))
    flow = cfg.flow
    asks = flow.max_repeats + 1  # the intro and its wait, then once per re-ask
    ask = asks * (d("intro") + flow.input_timeout_s) + \
        flow.max_repeats * max(d("invalid"), d("no_input"))
    slot = d("slot_question") + flow.input_timeout_s if flow.ask_slot else 0.0
    # The longest answer: consent (message, legal, the slot question), then the goodbye or an
    # opt-out's confirmation, whichever is longer (opt-out is live until the end).
    after = d("message") + d("legal") + slot + max(d("goodbye"), d("optout_confirm"))
    amd = AMD_MAX_S if cfg.dialer.amd else 0.0
    return cfg.dialer.ring_timeout_s + amd + ask + after + MARGIN_S


def overdue(ns: NodeState, now: float) -> list[InFlight]:
    """The node's calls past their deadline. Before the earliest deadline a call was given,
    none can be: the calls are walked (all of them, 1,000 in flight) only once it has passed.
    The bound is then the earliest deadline of all (a late call not settled this time keeps
    it passed, so it is asked about again next time)."""
    if now < ns.earliest_deadline:
        return []
    ns.earliest_deadline = min((f.deadline for f in ns.calls.values()), default=math.inf)
    return [f for f in ns.calls.values() if f.deadline <= now]


async def watch(dialer: Dialer) -> None:
    """Settle the calls past their deadline, node by node, for as long as the dialer lives."""
    while True:
        await dialer.clock.sleep(POLL_S)
        for ns in list(dialer.nodes.values()):
            late = overdue(ns, dialer.clock.monotonic())
            if late and ns.node.up:
                try:
                    await settle_overdue(dialer, ns, late)
                except Exception as exc:  # never let the watch die: asked again next time
                    log.warning("deadline check on %s failed (%s)", ns.name, exc)


async def settle_overdue(dialer: Dialer, ns: NodeState, late: list[InFlight]) -> None:
    live = await asyncio.wait_for(ns.node.channels(), NODE_TIMEOUT_S)
    for flight in late:
        if dialer.by_call.get(flight.call_id) is not flight:
            continue  # settled while the node answered
        row = await dialer.read_call(flight.call_id)  # off the loop on a remote store
        if dialer.by_call.get(flight.call_id) is not flight:
            continue  # settled while it was read
        if row is not None and row["outcome"]:  # stored, its end never reported: free it
            dialer.finished(flight.call_id)
            continue
        if flight.channel_id in live:
            log.warning("call %s still live past its deadline: hanging it up", flight.call_id)
            try:
                await asyncio.wait_for(ns.node.hangup(flight.channel_id), NODE_TIMEOUT_S)
            except Exception as exc:  # gone meanwhile, or the node is away
                log.info("hangup %s: %s", flight.channel_id, exc)
        else:
            log.warning("call %s past its deadline and gone from %s: settling it",
                        flight.call_id, ns.name)
        answered = flight.answered or (row is not None and row["answered_at"] is not None)
        dialer.settle_error(flight.call_id, "deadline", answered=answered,
                            attempt=flight.attempt)
        dialer.finished(flight.call_id)
