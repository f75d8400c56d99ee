"""The carrier breaker: a node whose trunk refuses every call stops the run.

A carrier that refuses the whole trunk (bad credentials 401/407, a caller ID not on the
contract 403, codecs 488, a trunk-wide 503) ends every call with the same refusal or congestion
cause: each attempt would be stored `failed` (final) or `congestion` until max_attempts, and the
run would walk through the whole list. Counted per node, since a pool's nodes may use different
trunks: an answered call or any other end on that node starts the count again.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ivr.callflow.dispositions import carrier_refusal, unanswered_outcome
from ivr.campaign.nodes import InFlight

log = logging.getLogger(__name__)

# Refusals in a row on one node that stop the run. Above what individual declines give (a 603
# is cause 21 too: a few callees in a row may decline, the dialled lists answer often enough to
# break such a run well before 20), below burning a list (each refusal exhausts a contact).
CARRIER_TRIP_AFTER = 20


class CarrierGuard:
    """Counts each node's unanswered attempts in a row ending with a carrier refusal or
    congestion; at `trip_after`, says why once (ERROR) and tells `on_trip`."""

    def __init__(self, trip_after: int = CARRIER_TRIP_AFTER) -> None:
        self.trip_after = trip_after
        # node -> what each refusal in a row said, and whether it was stored final (`failed`)
        self._streaks: dict[str, list[tuple[str, bool]]] = {}
        self.why = ""  # once tripped: the run's `why`
        self.on_trip: Callable[[str], None] = lambda why: None

    def arm(self, on_trip: Callable[[str], None]) -> None:
        """A new run: counts from zero, and its stop is told of a trip."""
        self._streaks.clear()
        self.why = ""
        self.on_trip = on_trip

    def streak(self, node: str) -> int:
        return len(self._streaks.get(node, ()))

    def answered(self, node: str) -> None:
        """A call of ours was answered through this node's trunk: it carries calls."""
        self._streaks.pop(node, None)

    def ended(self, flight: InFlight) -> None:
        """An attempt has its outcome: the flight's Originate reason and hangup cause decide."""
        said = None if flight.answered or not flight.failed else \
            carrier_refusal(flight.reason, flight.cause)
        if said is None:
            self._streaks.pop(flight.node, None)
            return
        streak = self._streaks.setdefault(flight.node, [])
        streak.append((said, unanswered_outcome(flight.reason, flight.cause) == "failed"))
        if len(streak) >= self.trip_after and not self.why:
            self.why = self._why(flight.node, streak)
            log.error("%s", self.why)
            self.on_trip(self.why)

    @staticmethod
    def _why(node: str, streak: list[tuple[str, bool]]) -> str:
        seen = ", ".join(f"{said} x{n}" for said, n in
                         Counter(said for said, _ in streak).most_common())
        # Stored `failed` as a callee's decline would be: the store cannot reopen them.
        final = sum(1 for _, failed in streak if failed)
        lost = f"; {final} of these contacts are exhausted (not called again)" if final else ""
        return (f"carrier refused {len(streak)} calls in a row on node {node} ({seen}): no new "
                "calls; check the trunk's credentials (401/407), the caller ID registered with "
                f"the carrier (403), the codecs it accepts (488) and its capacity (503/504){lost}")
