"""A contact waiting on its retry delay, and the soonest of many found with few searches.

`RetryWait` is the judge's verdict for such a contact (planning.judge): when the calling rules
next allow it is searched lazily, at its first read; `soonest_retry` finds the soonest of a
plan's waiting contacts, sharing one search among contacts of the same calendar.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ivr.compliance.callee_place import code_place, e164
from ivr.compliance.calling_rules import (BLACKOUT, HOLIDAY, OUTSIDE_WINDOW, SLOT, Verdict,
                                          callee_zone, fr_subdivisions, history_allows,
                                          is_fiction_number)
from ivr.config import Schedule
from ivr.store.base import History

RETRY_WAIT = "retry_wait"


class RetryWait(Verdict):
    """A contact waiting on its retry delay. `next_allowed` is the first instant the calling
    rules allow from its retry time on (a retry due at 20:45 on a Friday is Monday 10:00), the
    retry time itself when they find none (the plan at that time tells why). It is found at its
    first read, not by the plan: that search costs ~100 us a contact, the plan ~3 us, and the
    run, the console and the why-nobody line only need the soonest (`soonest_retry`)."""

    def __init__(self, number: str, past: History,
                 rules: Callable[[datetime, History], Verdict], schedule: Schedule,
                 row: Mapping[str, Any]) -> None:
        assert past.retry_at is not None
        # frozen: set as the dataclass's own __init__ does; next_allowed is the property's
        for name, value in (("allowed", False), ("reason", RETRY_WAIT),
                            ("detail", "waiting before the next attempt"),
                            ("retry_at", past.retry_at), ("number", number), ("past", past),
                            ("_rules", rules), ("schedule", schedule), ("row", row),
                            ("_at", None)):
            object.__setattr__(self, name, value)

    def at_retry(self) -> Verdict:
        """The calling rules' verdict at the retry time (searched once)."""
        if self._at is None:
            object.__setattr__(self, "_at", self._rules(self.retry_at, self.past))
        return self._at  # type: ignore[no-any-return]

    @property  # type: ignore[override]
    def next_allowed(self) -> datetime:
        at = self.at_retry()
        return self.retry_at if at.allowed or at.next_allowed is None else at.next_allowed

    def searched(self) -> bool:
        return self._at is not None


# The reasons for which the calendar alone (windows, slot, holidays, blackouts) refused: the
# contact's history did not (check_call reports a cooldown or a cap first).
_CALENDAR = frozenset({BLACKOUT, HOLIDAY, OUTSIDE_WINDOW, SLOT})


def soonest_retry(waiting: Iterable[RetryWait]) -> RetryWait | None:
    """The one of `waiting` with the soonest next_allowed, searching few of them. A contact's
    next_allowed is never before its retry time, nor before the calendar opens after it: the
    contacts go by that bound, soonest first, and the search stops at the first bound at or
    after the best time found. Where one's search found its calendar closed from its retry
    time until T, a contact of the same calendar (place, slot, fiction bypass: the quiet
    verdicts' key) whose retry time falls before T, and whose history does not block it then,
    is next allowed at T without a search of its own: a thousand retries due after 20:00 cost
    one search, not a thousand."""
    order = sorted(waiting, key=_retry_time)  # by the bound, soonest first
    later: list[tuple[datetime, int, RetryWait]] = []  # bound by a closed calendar: its end
    keys = _CalendarKeys()
    closed: dict[tuple[object, ...], tuple[datetime, datetime]] = {}
    best: RetryWait | None = None
    best_at, n, pushed = _NEVER, 0, itertools.count()
    while n < len(order) or later:
        if later and (n == len(order) or later[0][0] <= order[n].retry_at):
            bound, _, v = heapq.heappop(later)
        else:
            v, n = order[n], n + 1
            bound = v.retry_at
        if bound >= best_at:
            break
        if not v.searched():
            key = keys(v)
            start, end = closed.get(key, (bound, bound))
            if start <= v.retry_at < end and end > bound and _history_clear(v):
                if end < best_at:  # its time is T: its turn comes at T
                    heapq.heappush(later, (end, next(pushed), v))
                continue
            at = v.at_retry()
            if at.reason in _CALENDAR and at.next_allowed is not None:
                closed[key] = (v.retry_at, at.next_allowed)
        if v.next_allowed < best_at:
            best, best_at = v, v.next_allowed
    return best


def _retry_time(v: RetryWait) -> datetime:
    return v.retry_at


def _history_clear(v: RetryWait) -> bool:
    """Whether neither the refusal cooldown nor the attempt cap blocks `v` at its retry time:
    its next_allowed is then the calendar's first opening from it."""
    return history_allows(v.retry_at, v.schedule, v.past.attempts, v.past.last_refusal)


class _CalendarKeys:
    """A contact's calendar key as the quiet verdicts memo it, by its first five digits and
    slot when its country code decides its place (`_QuietVerdicts`)."""

    def __init__(self) -> None:
        self.by_head: dict[tuple[str, object], tuple[object, ...]] = {}

    def __call__(self, v: RetryWait) -> tuple[object, ...]:
        number, tz, slot = v.number, v.row.get("timezone"), v.row.get("slot")
        bypass = v.schedule.demo_any_hour and is_fiction_number(number)
        head = (number[1:6], slot) if not tz and not v.schedule.demo_any_hour and \
            e164(number) else None
        key = self.by_head.get(head) if head is not None else None
        if key is None:
            place, by_code = calendar_place(number, tz, v.schedule.timezone)
            key = (v.schedule.timezone, place, bypass, slot)
            if head is not None and by_code:
                self.by_head[head] = key
        return key


def calendar_place(number: str, tz: str | None, default_tz: str) -> tuple[object, bool]:
    """The callee's zone and holiday region, and whether its country code alone decided them."""
    place = code_place(number, default_tz)
    by_code = place is not None and not tz
    if not by_code:
        return (callee_zone(number, tz, default_tz), fr_subdivisions(number)), False
    return place, True


_NEVER = datetime.max.replace(tzinfo=timezone.utc)


def soonest_first(v: Verdict) -> datetime:
    """Sort key: the earliest next_allowed first, a verdict without one last."""
    return v.next_allowed or _NEVER
