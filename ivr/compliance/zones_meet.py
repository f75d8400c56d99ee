"""Can the calling hours of several time zones ever meet? A quick proof of "never".

A number that may be in several zones is called only when the wall clock of each of them is in
the calling hours (calling_rules). Zones spread over more than a working day never meet: a +1
number phonenumbers cannot place is anywhere from Hawaii to Guam. The exact search for the
next allowed time then walks its whole horizon (400 days of candidates, 0.4 s a number) to
find nothing. Here: each zone's open hours of the week, moved to UTC by every offset the zone
uses over the horizon and united; then intersected across the zones. At any instant each zone
has one of those offsets, so when the intersection is empty no instant is open in all of them.
When it is not, the exact search decides. Pure: no clock, no I/O.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

WEEK_S = 7 * 86400
_ALL = (1 << WEEK_S) - 1
_MONDAY = datetime(1970, 1, 5, tzinfo=timezone.utc)  # UTC seconds into the week count from it
# Offsets are read every 6 hours: tzdata has no offset that lasts less than that. One missed
# could only make the answer "never" where a rare instant was open: the call waits (fail
# closed), it is never placed outside the hours.
_STEP = timedelta(hours=6)

Plan = dict[int, list[tuple[int, int]]]


def may_meet(t0: datetime, zones: tuple[ZoneInfo, ...], plan: Plan, horizon_days: int) -> bool:
    """False when no instant from t0 to t0 + horizon_days can be open in every zone (`plan`:
    weekday -> open [start, end) seconds of wall time, the same in each zone)."""
    if len(zones) < 2:
        return True
    return _may_meet(zones, _plan_key(plan), t0.astimezone(timezone.utc).date(), horizon_days)


def meet_bits(t0: datetime, zones: tuple[ZoneInfo, ...], plan: Plan, horizon_days: int) -> int:
    """Bit u set (u: week_second of an instant): that instant of the week may be open in
    every zone, as far as their offsets from t0 to t0 + horizon_days go."""
    return _meet_bits(zones, _plan_key(plan), t0.astimezone(timezone.utc).date(), horizon_days)


def _plan_key(plan: Plan) -> tuple[tuple[tuple[int, int], ...], ...]:
    return tuple(tuple(plan[wd]) for wd in range(7))


@functools.lru_cache(maxsize=1024)  # the answer only: a week of bits is ~75 KB
def _may_meet(zones: tuple[ZoneInfo, ...], plan: tuple[tuple[tuple[int, int], ...], ...],
              day: date, horizon_days: int) -> bool:
    return bool(_meet_bits(zones, plan, day, horizon_days))


def _meet_bits(zones: tuple[ZoneInfo, ...], plan: tuple[tuple[tuple[int, int], ...], ...],
               day: date, horizon_days: int) -> int:
    local = _week_bits(plan)
    start = datetime.combine(day - timedelta(days=2), time(), timezone.utc)
    end = start + timedelta(days=horizon_days + 4)
    meet = _ALL
    for zone in zones:
        utc = 0
        for offset in _offsets(zone, start, end):
            utc |= _in_utc(local, offset)
        meet &= utc
        if not meet:
            break
    return meet


def _week_bits(plan: tuple[tuple[tuple[int, int], ...], ...]) -> int:
    """Bit s set: the wall time s seconds after Monday 00:00 is open."""
    bits = 0
    for wd, spans in enumerate(plan):
        for s, e in spans:
            bits |= ((1 << (e - s)) - 1) << (wd * 86400 + s)
    return bits


def _in_utc(local: int, offset: int) -> int:
    """The same hours in UTC seconds into the week: open at u when the wall time u + offset
    is (a rotation of the week by the offset)."""
    k = offset % WEEK_S
    return ((local >> k) | (local << (WEEK_S - k))) & _ALL


def _offsets(zone: ZoneInfo, start: datetime, end: datetime) -> set[int]:
    """The UTC offsets (seconds) `zone` uses between start and end, as their sum with the
    instant's position in the week, counted from _MONDAY, needs whole seconds."""
    out: set[int] = set()
    t = start
    while t <= end:
        off = t.astimezone(zone).utcoffset()
        out.add(int(off.total_seconds()) if off is not None else 0)
        t += _STEP
    return out


def week_second(t: datetime) -> int:
    """Seconds of `t` (aware) into its UTC week, Monday 00:00 = 0: its bit in meet_bits."""
    return int((t - _MONDAY).total_seconds()) % WEEK_S
