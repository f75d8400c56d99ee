"""How long a call can possibly last, and the watch that settles calls past their deadline.

A controller never waits forever for a call it cannot see (issue 17): events lost, an IVR
that never reported, a call another controller serves. Each call in flight gets a deadline,
the longest possible call plus a margin; past it the dialer asks the node for its channels and
settles the call (`error`, stage `deadline`, retried), hanging it up first if it still lives.
A node that is down cannot be asked: once it has been down for LOST_GRACE_S (its reconnect had
its chance to reconcile them), its calls past their deadline are settled unseen (`error`, stage
`node-lost`, retried after the `error` delay). Past its deadline a call has ended, whatever the
node's state, so the retry dials nobody twice; before it, a down node may still carry it. A
call the node never said it placed may still be placed late by a hung Asterisk: that attempt
is left open for the node's reconciliation instead. A call whose IVR session still runs is
never cut here.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ivr.callflow.flow import HOLD_REPLAYS
from ivr.config import Config
from ivr.store.safe_writes import COMMIT_WAIT_S

if TYPE_CHECKING:  # the dialer imports this module
    from ivr.campaign.dialer import Dialer
    from ivr.campaign.nodes import InFlight, NodeState

log = logging.getLogger(__name__)
AMD_MAX_S = 10.0      # AMD() decides within its totalAnalysisTime (5 s by default)
MARGIN_S = 30.0       # AGI round trips, the IVR's checks after a hangup, the dialer's graces
POLL_S = 1.0          # how often the watch looks for overdue calls
NODE_TIMEOUT_S = 5.0  # a node that does not answer within this is asked again next time
LOST_GRACE_S = 10.0  # a node down this long is not coming back in time to settle its calls
HELD_PROMPTS = 3  # session_limit_s: the prompts owed whole on one path (flow.until_heard)


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
    # opt-out's confirmation, whichever is longer (opt-out is live until the end); an opt-out
    # the store has not taken within COMMIT_WAIT_S hears the legal mentions instead.
    after = d("message") + d("legal") + slot + max(
        d("goodbye"), d("optout_confirm"), COMMIT_WAIT_S + d("legal"))
    amd = AMD_MAX_S if cfg.dialer.amd else 0.0
    return cfg.dialer.ring_timeout_s + amd + ask + after + MARGIN_S


def session_limit_s(longest_s: float, hold_wait_s: float) -> float:
    """How long an IVR session may run before the controller cuts it off (agi_ivr). A prompt
    owed whole (the message, the legal mentions, and those again for an opposition not yet
    stored) that plays into a hold plays again once the line is back, HOLD_REPLAYS times at
    most, after a hold wait each (flow.until_heard): so HOLD_REPLAYS times the longest call,
    plus those waits, is past any call the flow allows. A session still running then has
    stalled (an await that never returns), and Asterisk alone would keep the callee in
    silence, and the line billed, until they hang up: its TIMEOUT(absolute) does not end an
    AGI whose FastAGI server sends nothing (the AGI waits for it even on a hung-up channel)."""
    return HOLD_REPLAYS * longest_s + HELD_PROMPTS * HOLD_REPLAYS * hold_wait_s


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
            now = dialer.clock.monotonic()
            late = overdue(ns, now)
            if not late:
                continue
            try:
                if ns.node.up:
                    await settle_overdue(dialer, ns, late)
                elif ns.down_for(now) >= lost_grace_s(dialer):
                    await settle_unseen(dialer, ns, late, now)
            except Exception as exc:  # never let the watch die: asked again next time
                log.warning("deadline check on %s failed (%s)", ns.name, exc)


def lost_grace_s(dialer: Dialer) -> float:
    """How long a node must be down before its late calls are settled unseen (no longer than
    a call's deadline: a short one, in tests, keeps it short)."""
    return min(LOST_GRACE_S, dialer.deadline_s)


async def settle_overdue(dialer: Dialer, ns: NodeState, late: list[InFlight]) -> None:
    # A call whose IVR session still runs is talking (prompts rebuilt longer than the deadline
    # assumed): it ends itself, and the node is not asked about it every second.
    late = [f for f in late if f.call_id not in dialer.ivr_active]
    if not late:
        return
    live = await asyncio.wait_for(ns.node.channels(), NODE_TIMEOUT_S)
    for flight in late:
        answered = await _still_open(dialer, flight)
        if answered is None:
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
        _settle(dialer, flight, "deadline", answered)


async def settle_unseen(dialer: Dialer, ns: NodeState, late: list[InFlight],
                        now: float) -> int:
    """The late calls of a node down for a while: `error`, stage `node-lost`, retried after
    the `error` delay, once the node said the call was placed (answered, failed or hung up).
    An IVR session still running records its own outcome. A call the node never said it
    placed is not settled: a hung Asterisk may still read its Originate from the socket, or
    run one it queued, when it recovers, and a retry would then dial the number twice. The run
    stops waiting for it; its attempt stays open for the node's reconciliation."""
    settled = left = 0
    for flight in late:
        if flight.call_id in dialer.ivr_active:
            continue
        placed = flight.answered or flight.failed or flight.hung_up
        # a node refusing our login is alive and reading (restarted): nothing waits in it
        if not (placed or getattr(ns.node, "refusing", False)) \
                and dialer.by_call.get(flight.call_id) is flight:
            dialer.abandon(flight.call_id)
            left += 1
            continue
        answered = await _still_open(dialer, flight)
        if answered is not None:
            _settle(dialer, flight, "node-lost", answered)
            settled += 1
    if settled:
        log.warning("node %s down for %.0f s: %d call(s) past their deadline settled as error "
                    "(node-lost), retried on the nodes that answer", ns.name,
                    ns.down_for(now), settled)
    if left:
        log.warning("node %s down for %.0f s: %d call(s) it never said it placed left open "
                    "for its reconciliation (their numbers are not called until then: when the "
                    "node answers again, or at the next run)", ns.name, ns.down_for(now), left)
    return settled


async def _still_open(dialer: Dialer, flight: InFlight) -> bool | None:
    """Whether the call was answered, as far as the store or its events know; None when it is
    no longer ours to settle, or its outcome is stored (then it is freed)."""
    if dialer.by_call.get(flight.call_id) is not flight:
        return None  # settled while the node answered
    row = await dialer.read_call(flight.call_id)  # off the loop on a remote store
    if dialer.by_call.get(flight.call_id) is not flight:
        return None  # settled while it was read
    if row is not None and row["outcome"]:  # stored, its end never reported: free it
        dialer.finished(flight.call_id)
        return None
    return flight.answered or (row is not None and row["answered_at"] is not None)


def _settle(dialer: Dialer, flight: InFlight, stage: str, answered: bool) -> None:
    if dialer.by_call.get(flight.call_id) is not flight:
        return  # settled during the hang-up
    dialer.settle_error(flight.call_id, stage, answered=answered, attempt=flight.attempt)
    dialer.finished(flight.call_id)
