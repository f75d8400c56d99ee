"""The carrier breaker: a node whose trunk refuses every call, or never answers, stops the run.

A carrier that refuses the whole trunk (bad credentials 401/407, a caller ID not on the
contract 403, codecs 488, a trunk-wide 503 or 502, no credit 402), or that the node cannot
reach at all (the Originate fails with no cause: dispositions.NO_CAUSE) ends every call with
the same refusal or congestion cause: each attempt would be stored `failed` (final) or
`congestion` until max_attempts, and the run would walk through the whole list. A carrier that
does not answer at all (SBC down, a firewall: no SIP reply) ends each call at the ring timeout
as `no_answer`, with the same result. Counted per node, since a pool's nodes may use different
trunks: an answered call starts both counts again at its answer (not at its hang-up, which
says nothing of the trunk since), a busy one (the far network answered) too, any other end
the refusals' count.
Silence counts only failed Originates (a ring-out), never an `error` settle (a node lost, the
deadline, a reconciliation: the calls are retried elsewhere), and only on a node that has not
answered a call in this run: a dead trunk is dead from the start (misconfiguration); one dying
mid-run refuses, which the refusals' count sees. Nothing counts once the run is stopping: the
operator's hard stop hangs calls up (cause 16), which is no carrier's doing.

A streak trips only once the node's calls that were ringing when it began have ended: a short
blip's refusals come back in milliseconds while those calls answer seconds later, and their
answer resets it; a trunk refusing everything refuses them too. Congestion on a number whose
previous attempt in this run was congested too is neutral: callees whose own route is congested
give it on every attempt, and their retries come last, in a row; counted, they stopped runs a
few attempts from their end. A retry after a no answer or a busy that is congested counts: a
trunk that fails once only retries are left is still seen.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr.callflow.dispositions import NO_CAUSE, carrier_refusal, unanswered_outcome
from ivr.campaign.nodes import InFlight

log = logging.getLogger(__name__)

# Refusals in a row on one node that stop the run. Above what individual declines give (a 603
# is cause 21 too: a few callees in a row may decline, the dialled lists answer often enough to
# break such a run well before 20), below burning a list (each refusal exhausts a contact).
CARRIER_TRIP_AFTER = 20
# Unanswered ends in a row (busy aside) on one node that stop the run, counted only until the
# node's first answer: a list answering 5 % of its calls leaves a node's FIRST 100 calls all
# unanswered with probability 0.95**100, ~0.6 % per run (not per window: any 100 in a row of a
# 2,000-call list would be ~50 %).
SILENCE_TRIP_AFTER = 100
REFUSED, SILENT = "refused", "silent"


@dataclass
class Streak:
    """Unanswered ends in a row on one node: what each said and whether it was stored final
    (`failed`); the node's unanswered calls in flight when it began, until they end."""
    older: set[int]
    ends: list[tuple[str, bool]] = field(default_factory=list)
    before: frozenset[int] = field(init=False)  # `older` as it began: they rang before it

    def __post_init__(self) -> None:
        self.before = frozenset(self.older)


class CarrierGuard:
    """Counts each node's streaks; when one reaches its length with none of its older calls
    still in flight, says why once (ERROR) and tells `on_trip`."""

    def __init__(self, trip_after: int = CARRIER_TRIP_AFTER,
                 silent_after: int = SILENCE_TRIP_AFTER,
                 ringing: Callable[[str], set[int]] = lambda node: set()) -> None:
        self.limits = {REFUSED: trip_after, SILENT: silent_after}
        self.ringing = ringing  # node -> call ids in flight there, not answered
        self._streaks: dict[tuple[str, str], Streak] = {}
        self._answering: set[str] = set()  # nodes that answered in this run: no silence count
        self._congested: set[str] = set()  # numbers whose last attempt in this run was congested
        self.stopping: Callable[[], bool] = lambda: False  # the run's stop is set: count nothing
        self.why = ""  # once tripped: the run's `why`
        self.on_trip: Callable[[str], None] = lambda why: None
        self.on_arm: list[Callable[[], None]] = []  # guards counting beside it (node_guard.py)

    def arm(self, on_trip: Callable[[str], None],
            stopping: Callable[[], bool] = lambda: False) -> None:
        """A new run: counts from zero, and its stop is told of a trip; once `stopping` says
        the run stops (graceful or hard), nothing is counted."""
        self._streaks.clear()
        self._answering.clear()
        self._congested.clear()
        self.why = ""
        self.on_trip, self.stopping = on_trip, stopping
        for reset in self.on_arm:
            reset()

    def trip(self, why: str) -> None:
        """Stop the run once, saying why (ERROR): this breaker's streaks, or the node guard's
        (node_guard.py), which stops the run the same way (stopped_by carrier, exit 4)."""
        if self.why:
            return
        self.why = why
        log.error("%s", why)
        self.on_trip(why)

    def streak(self, node: str, kind: str = REFUSED) -> int:
        found = self._streaks.get((node, kind))
        return len(found.ends) if found else 0

    def answered(self, node: str) -> None:
        """A call of ours was answered through this node's trunk: it carries calls."""
        self._answering.add(node)
        for kind in self.limits:
            self._streaks.pop((node, kind), None)

    def ended(self, flight: InFlight) -> None:
        """An attempt has its outcome: the flight's Originate reason and hangup cause decide."""
        if flight.answered:
            # Counted at its answer (Dialer.on_event). Its hang-up, maybe minutes later, says
            # nothing of the trunk since: resetting here hid a trunk that died meanwhile.
            self._answering.add(flight.node)
            self._congested.discard(flight.number)
            return None
        if self.stopping():  # a hard stop's hang-ups, the drain's ends: not the carrier's
            return None
        outcome = unanswered_outcome(flight.reason, flight.cause) if flight.failed else \
            "ended unanswered"
        final = outcome == "failed"
        refusal = carrier_refusal(flight.reason, flight.cause) if flight.failed else None
        if refusal is not None and outcome == "congestion":
            if flight.number in self._congested:
                # Its previous attempt in this run was congested too: this callee's route,
                # nothing new of the trunk. Neither counted nor a reset (a list's tail is such
                # retries only). Any other retry (after a no answer, a busy) still counts.
                refusal = ""
            self._congested.add(flight.number)
        else:
            self._congested.discard(flight.number)
        if refusal is None and outcome == "no_answer" and self._rang_before(flight):
            refusal = ""  # our ring timeout, on a call the trunk took before: nothing new
        silence = None if outcome == "busy" else \
            f"{outcome} (cause {flight.cause})" if flight.cause is not None else outcome
        self._count(flight.node, REFUSED, refusal, final)
        if flight.failed and flight.node not in self._answering:  # an `error` settle: skipped
            self._count(flight.node, SILENT, silence, final)
        return None

    def _rang_before(self, flight: InFlight) -> bool:
        """Whether the flight was ringing when its node's refusals began: its ring-out ends
        at our Originate timeout, and the trunk may have died after its 180 (CI: the list's
        last first attempts rang out after the retries began, each starting the count
        again, and a trunk refusing every retry ran the list out)."""
        streak = self._streaks.get((flight.node, REFUSED))
        return streak is not None and flight.call_id in streak.before

    def _count(self, node: str, kind: str, said: str | None, final: bool) -> None:
        key = (node, kind)
        if said == "":  # neutral: the streak stays as it is, and does not trip here: the
            return  # next refusal does (after a blip, the calls placed since reset it first)
        if said is None:
            self._streaks.pop(key, None)
            return
        streak = self._streaks.setdefault(key, Streak(self.ringing(node)))
        streak.ends.append((said, final))
        if streak.older:  # only those still ringing hold the trip back
            streak.older &= self.ringing(node)
        if len(streak.ends) >= self.limits[kind] and not streak.older and not self.why:
            self.trip(self._why(node, kind, streak.ends))

    @staticmethod
    def _why(node: str, kind: str, ends: list[tuple[str, bool]]) -> str:
        seen = ", ".join(f"{said} x{n}" for said, n in
                         Counter(said for said, _ in ends).most_common())
        # Stored `failed` as a callee's decline would be: the store cannot reopen them.
        final = sum(1 for _, failed in ends if failed)
        lost = f"; {final} of these contacts are exhausted (not called again)" if final else ""
        if kind == SILENT:
            return (f"no call answered on node {node} in {len(ends)} calls in a row ({seen}): "
                    "no new calls; check that the carrier's trunk answers at all (its SBC, a "
                    f"firewall between the PBX and the carrier, the PBX's SIP registration){lost}")
        unreachable = "; with no cause, the node never reached the carrier: `pjsip show " \
            "contacts` there (Unavailable: its SBC, a firewall, DNS) and dialer.dial_string's " \
            "endpoint" if any(said == NO_CAUSE for said, _ in ends) else ""
        return (f"carrier refused {len(ends)} calls in a row on node {node} ({seen}): no new "
                "calls; check the trunk's credentials (401/407), the caller ID registered with "
                f"the carrier (403), the codecs it accepts (488) and its capacity (503/504)"
                f"{unreachable}{lost}")
