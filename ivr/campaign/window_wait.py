"""`ivr run --wait`: nobody may be called now, yet somebody may be later (the calling window
reopens, a holiday or a cap period ends): the run waits for that time instead of ending, so a
run kept as a service calls through every day of the campaign.

Without it a run ends at the first close of the window (nothing in flight, no retry waiting),
and a service manager restarting it on failure only never starts it again.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from ivr.campaign.clock import Clock
from ivr.campaign.planning import Plan

# While waiting, the plan is read again at least this often: a list imported or a contact
# changed meanwhile (console, CLI) is seen within a minute; a wake-up (a call's end, the
# console's run control, a stop) reads it at once.
WINDOW_REPLAN_S = 60.0
# A next allowed time already reached (the plan and the rules round differently) is not
# waited for in a tight loop of plans.
MIN_WAIT_S = 1.0


@dataclass
class WaitingPlan(Plan):
    """The plan as the run state reads it: its waiting line ends with the time the run waits
    for (the snapshot, the console, the progress line)."""
    until: datetime | None = None

    def reasons(self) -> Counter[str]:
        said = Counter[str]()
        items = super().reasons().most_common()
        for i, (reason, n) in enumerate(items):
            last = i == len(items) - 1 and self.until is not None
            said[f"{reason}; waiting until {self.until:%Y-%m-%d %H:%M} UTC" if last
                 else reason] = n
        return said


def told(p: Plan) -> Plan:
    """The plan as a waiting run shows it: nobody due, no retry waiting, yet somebody allowed
    later: a WaitingPlan until then (the run waits for `until`); else the plan itself. One
    plan, one line: the progress line (once a minute while it does not change) says it."""
    if p.due or p.next_retry() is not None:
        return p
    until = p.next_allowed()
    return p if until is None else WaitingPlan(p.due, p.waiting, p.history, until=until)


async def until_allowed(until: datetime, clock: Clock, stop: asyncio.Event,
                        *wake: asyncio.Event) -> None:
    """Wait for `until` (at most WINDOW_REPLAN_S), a stop or a wake-up; the caller plans
    again."""
    for event in wake:
        event.clear()
    left = (until - clock.now()).total_seconds()
    await clock.wait(stop, *wake, timeout=min(max(left, MIN_WAIT_S), WINDOW_REPLAN_S) + 0.05)
