"""When may a number be called? Pure rules, no I/O, no clock: `now` is always an argument.

Defaults follow Décret 2022-1313 (adopted for political calls): Monday-Friday 10:00-13:00 and
14:00-20:00 in the callee's time zone, never on public holidays, at most 4 attempts per rolling
30 days, nothing for 60 days after a refusal. Boundaries (all instants are compared in UTC):

* window: a call at wall-clock time t is allowed when start <= t < end (19:59:59 yes, 20:00 no);
* attempt cap: attempts counted are those with  now - 30 days < attempt  , i.e. the window is
  (now - 30 days, now]; an attempt exactly 30 days old no longer counts. Timestamps after `now`
  (clock skew) are counted too, to fail closed;
* refusal cooldown: blocked while  now < refusal + M days  (M x 24 h of elapsed time), allowed
  from refusal + M days exactly;
* holidays and blackout dates apply to the callee's local calendar date.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

import holidays  # noqa: F401  (the _Calendar annotation)

from ivr.compliance.callee_place import (  # noqa: F401 (zone helpers: used from here)
    Zones, _number_zone, _parsed, callee_zone, is_fiction_number, zones_of)
from ivr.compliance.holiday_place import (  # noqa: F401 (holiday helpers: used from here)
    _country_calendar, _holiday_calendar, _number_subdivs, fr_subdivisions, holiday_name,
    on_holiday)
from ivr.compliance.zones_meet import may_meet
from ivr.config import Schedule, Window
from ivr.config_checks import CAP_PERIOD_DAYS
from ivr.errors import ComplianceError

UTC = timezone.utc
DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_SLOT_HOURS: dict[str, str] = {
    "morning": "10:00-13:00", "afternoon": "14:00-17:00", "evening": "17:00-20:00"}
CAP_PERIOD = timedelta(days=CAP_PERIOD_DAYS)
SEARCH_HORIZON_DAYS = 400  # next_allowed is None if nothing opens within this many days

# Reason codes carried by Verdict.reason.
OK = "ok"
OPTED_OUT = "opted_out"
REFUSAL_COOLDOWN = "refusal_cooldown"
ATTEMPT_CAP = "attempt_cap"
BLACKOUT = "blackout"
HOLIDAY = "holiday"
OUTSIDE_WINDOW = "outside_window"
SLOT = "slot"


_HOURS_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class WindowSpec:
    """One parsed window: weekdays (0 = Monday) and [start, end) spans in seconds of wall time."""
    days: frozenset[int]
    spans: tuple[tuple[int, int], ...]
    text: str  # as written in the config, for messages


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # one of the reason codes above
    detail: str  # one line for humans
    next_allowed: datetime | None = None  # UTC; None when allowed, or when nothing ever opens


def _bad(what: str, value: object, expected: str) -> ComplianceError:
    return ComplianceError(f"{what} {value!r} is invalid: expected {expected}")


def _parse_days(text: object) -> frozenset[int]:
    expected = "day names mon..sun as a range or list, e.g. 'mon-fri', 'sat', 'mon,wed,fri'"
    if not isinstance(text, str) or not text.strip():
        raise _bad("schedule.windows days", text, expected)
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            raise _bad("schedule.windows days", text, expected)
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        if last < first:  # no wrap-around: 'sat-mon' is more likely a typo than intended
            raise _bad("schedule.windows days", text, "a range going forward from mon to sun, e.g. 'mon-fri'")
        days.update(range(first, last + 1))
    return frozenset(days)


def parse_span(text: object, what: str = "schedule.windows hours") -> tuple[int, int]:
    """'10:00-13:00' -> (36000, 46800) seconds; end exclusive, '24:00' allowed as end only."""
    expected = "'HH:MM-HH:MM' with start before end, e.g. '10:00-13:00' ('24:00' allowed as end)"
    m = _HOURS_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise _bad(what, text, expected)
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 86400 or start >= end:
        raise _bad(what, text, expected)
    return start, end


def parse_windows(windows: Iterable[Window]) -> tuple[WindowSpec, ...]:
    """Validate and parse config windows; ComplianceError names the first bad value."""
    specs = []
    for w in windows:
        hours = w.hours if isinstance(w.hours, list) else [w.hours]
        if not hours:
            raise _bad("schedule.windows hours", hours, "at least one 'HH:MM-HH:MM' span, e.g. ['10:00-13:00']")
        spans = tuple(sorted(parse_span(h) for h in hours))
        specs.append(WindowSpec(_parse_days(w.days), spans, f"{w.days} {','.join(map(str, hours))}"))
    return tuple(specs)


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


ANY_HOUR = (WindowSpec(frozenset(range(7)), ((0, 86400),), "any"),)


def _windows_key(windows: Iterable[Window]) -> tuple[tuple[object, object], ...]:
    return tuple((w.days, tuple(w.hours) if isinstance(w.hours, list) else w.hours)
                 for w in windows)


def _schedule_rules(schedule: Schedule) -> tuple[tuple[WindowSpec, ...], frozenset[date]]:
    key = (_windows_key(schedule.windows), tuple(map(str, schedule.blackout_dates)))
    try:
        hash(key)
    except TypeError:  # a malformed config value: parse it uncached, for its error message
        return _parsed_schedule.__wrapped__(*key)
    return _parsed_schedule(*key)


@functools.lru_cache(maxsize=64)  # checked at every plan and dial: parse the config once
def _parsed_schedule(windows: tuple[tuple[object, object], ...], blackout_dates: tuple[str, ...]
                     ) -> tuple[tuple[WindowSpec, ...], frozenset[date]]:
    specs = parse_windows(Window(days=d, hours=list(h) if isinstance(h, tuple) else h)  # type: ignore[arg-type]
                          for d, h in windows)
    if not specs:
        raise ComplianceError("schedule.windows is empty: configure at least one window, e.g. mon-fri 10:00-13:00")
    return specs, parse_blackout_dates(blackout_dates)


@functools.lru_cache(maxsize=256)
def _week_plan(specs: tuple[WindowSpec, ...], slot: tuple[int, int] | None) -> dict[int, list[tuple[int, int]]]:
    """Weekday -> merged open spans, intersected with the preferred slot if any."""
    plan: dict[int, list[tuple[int, int]]] = {}
    for wd in range(7):
        spans = _merge(sp for spec in specs if wd in spec.days for sp in spec.spans)
        if slot is not None:
            spans = [(max(s, slot[0]), min(e, slot[1])) for s, e in spans if max(s, slot[0]) < min(e, slot[1])]
        plan[wd] = spans
    return plan


def slot_meets_windows(schedule: Schedule, slot: str) -> bool:
    """Whether the named slot's hours meet a calling window on some weekday (if not, a callee
    who chose that slot could never be called back)."""
    span = parse_span(DEFAULT_SLOT_HOURS[slot], f"slot {slot!r} hours")
    return any(_week_plan(_schedule_rules(schedule)[0], span).values())


def windows_text(schedule: Schedule) -> str:
    """The calling windows as the config writes them, for messages."""
    return "; ".join(spec.text for spec in _schedule_rules(schedule)[0])


def _wall_seconds(local: datetime) -> int:
    return local.hour * 3600 + local.minute * 60 + local.second


def _local_to_utc(day: date, secs: int, zone: ZoneInfo, fold: int) -> datetime:
    """UTC instant of wall time `secs` on `day`. fold=0: first occurrence; in a DST gap, the
    transition itself (the earliest instant whose wall time is >= the requested one)."""
    naive = datetime.combine(day, time()) + timedelta(seconds=secs)
    if fold == 1:
        return naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    early = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early <= late:  # normal time, or ambiguous (fold=0 is the first occurrence)
        return early
    # Gap (spring forward): wall time does not exist; bisect whole seconds for the transition.
    lo, hi = int(late.timestamp()), int(early.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        wall = datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None)
        lo, hi = (lo, mid) if wall >= naive else (mid, hi)
    return datetime.fromtimestamp(hi, UTC)


def _in_plan(local: datetime, plan: dict[int, list[tuple[int, int]]]) -> bool:
    secs = _wall_seconds(local)
    return any(s <= secs < e for s, e in plan[local.weekday()])


def _next_open(t0: datetime, zones: tuple[ZoneInfo, ...], is_open: Callable[[datetime], bool],
               plan: dict[int, list[tuple[int, int]]]) -> datetime | None:
    """Earliest instant >= t0 where is_open() holds. Openings only happen at span starts (or at
    a DST transition inside one) in one of the zones, so those are the only candidates that
    need testing: a day's, in every zone, in time order up to the next day's earliest start."""
    if is_open(t0):
        return t0
    if not any(plan.values()) or not may_meet(t0, zones, plan, SEARCH_HORIZON_DAYS):
        return None  # a slot outside every window; zones whose hours never meet
    first_day = min(t0.astimezone(z).date() for z in zones) - timedelta(days=1)  # margin
    pending: set[datetime] = set()
    for i in range(SEARCH_HORIZON_DAYS + 1):
        day = first_day + timedelta(days=i)
        pending |= {_local_to_utc(day, s, z, fold)
                    for z in zones for s, _ in plan[day.weekday()] for fold in (0, 1)}
        bound = min(_local_to_utc(day + timedelta(days=1), 0, z, 0) for z in zones)
        for cand in sorted(c for c in pending if c < bound):
            pending.discard(cand)
            if cand > t0 and is_open(cand):
                return cand
    return None


def parse_blackout_dates(values: Iterable[object]) -> frozenset[date]:
    out = set()
    for v in values:
        try:
            out.add(v if isinstance(v, date) else date.fromisoformat(str(v).strip()))
        except ValueError:
            raise ComplianceError(
                f"schedule.blackout_dates: {v!r} is invalid: expected an ISO date such as 2026-03-14") from None
    return frozenset(out)


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got naive {value!r}")
    return value.astimezone(UTC)


def _fmt(t: datetime, zone: ZoneInfo) -> str:
    local = t.astimezone(zone)
    return f"{DAY_NAMES[local.weekday()]} {local:%Y-%m-%d %H:%M} {getattr(zone, 'key', zone)}"


def _slot_span(preferred_slot: str | None, slots_hours: dict[str, str] | None
               ) -> tuple[int, int] | Verdict | None:
    """The preferred slot's span, or a refusal when the consent names an unknown slot."""
    if not preferred_slot:
        return None
    table = {**DEFAULT_SLOT_HOURS, **(slots_hours or {})}
    if preferred_slot not in table:  # bad consent data: fail closed without crashing the run
        return Verdict(False, SLOT, f"preferred slot {preferred_slot!r} is unknown "
                       f"(known: {', '.join(sorted(table))}): fix the consent record", None)
    return parse_span(table[preferred_slot], f"slot {preferred_slot!r} hours")


@dataclass(frozen=True)
class _Calendar:
    """The calendar rules of one check: windows, slot, blackout dates and holidays, in each of
    the zones the callee may be in."""
    zones: tuple[ZoneInfo, ...]
    note: str  # why the zones are several, if not that the number may be in each (Zones.note)
    specs: tuple[WindowSpec, ...]
    blackouts: frozenset[date]
    bypass: bool  # demo_any_hour on a fiction number
    plan: dict[int, list[tuple[int, int]]]
    window_plan: dict[int, list[tuple[int, int]]]
    holidays: holidays.HolidayBase | None

    def blocked_day(self, d: date) -> str | None:
        if self.bypass:
            return None
        if d in self.blackouts:
            return BLACKOUT
        if self.holidays is not None and on_holiday(self.holidays, d):
            return HOLIDAY
        return None

    def is_open(self, t: datetime) -> bool:
        return all(self.blocked_day(local.date()) is None and _in_plan(local, self.plan)
                   for local in (t.astimezone(z) for z in self.zones))


def _calendar(schedule: Schedule, number: str, zone: ZoneInfo | Zones,
              slot: tuple[int, int] | None) -> _Calendar:
    specs, blackouts = _schedule_rules(schedule)
    bypass = schedule.demo_any_hour and is_fiction_number(number)
    listed = getattr(zone, "subdivs", ())  # a list row's overseas zone: its region's holidays
    calendar = _holiday_calendar(schedule.holidays_country, number, listed) \
        if schedule.skip_holidays and not bypass else None
    return _Calendar(zones_of(zone), getattr(zone, "note", ""), specs, blackouts, bypass,
                     _week_plan(ANY_HOUR if bypass else specs, slot), _week_plan(specs, None),
                     calendar)


def _history_block(now: datetime, zone: ZoneInfo, schedule: Schedule,
                   attempts_utc: Iterable[datetime], last_refusal_utc: datetime | None
                   ) -> tuple[datetime | None, str, str]:
    """The refusal cooldown and the attempt cap: the earliest instant from which the calendar
    rules are searched (None: never), with the reason and detail of the block (OK if none)."""
    cap, cooldown_days = schedule.max_attempts_per_30_days, schedule.refusal_cooldown_days
    earliest, reason, detail = now, OK, ""
    if last_refusal_utc is not None and cooldown_days > 0:
        until = _aware_utc(last_refusal_utc, "last_refusal_utc") + timedelta(days=cooldown_days)
        if now < until:
            earliest, reason = until, REFUSAL_COOLDOWN
            detail = f"refused on {_fmt(last_refusal_utc, zone)}: no call for {cooldown_days} days"
    counted = sorted(a for a in (_aware_utc(x, "attempts_utc") for x in attempts_utc) if a > now - CAP_PERIOD)
    if len(counted) >= cap:
        if reason == OK:
            reason = ATTEMPT_CAP
            detail = f"{len(counted)} attempts in the last 30 days (max {cap})"
        if cap == 0:
            return None, reason, detail + "; the cap is 0"
        # The cap frees up when enough of the oldest counted attempts are 30 days old.
        earliest = max(earliest, counted[len(counted) - cap] + CAP_PERIOD)
    return earliest, reason, detail


def history_allows(at: datetime, schedule: Schedule, attempts_utc: Iterable[datetime],
                   last_refusal_utc: datetime | None) -> bool:
    """Whether neither the refusal cooldown nor the attempt cap blocks a call at `at`: the
    calendar alone then decides (check_call's own rule, for planning's shortcuts)."""
    return _history_block(at, timezone.utc, schedule, attempts_utc, last_refusal_utc)[1] == OK


def _calendar_block(now: datetime, cal: _Calendar, preferred_slot: str | None
                    ) -> tuple[str, str]:
    """Why the calendar refuses `now` in one of the callee's zones (reason, detail), or (OK,
    detail) when each allows it."""
    note = cal.note or f"the number may be in {' or '.join(z.key for z in cal.zones)}"
    also = "" if len(cal.zones) == 1 else f" ({note}: each must allow it)"
    for zone in cal.zones[1:]:
        reason, detail = _zone_block(now, zone, cal, preferred_slot)
        if reason != OK:
            return reason, detail + also
    reason, detail = _zone_block(now, cal.zones[0], cal, preferred_slot)
    return reason, detail + also


def _zone_block(now: datetime, zone: ZoneInfo, cal: _Calendar, preferred_slot: str | None
                ) -> tuple[str, str]:
    local = now.astimezone(zone)
    blocked = cal.blocked_day(local.date())
    if blocked == BLACKOUT:
        return BLACKOUT, f"{local.date()} is an election blackout date"
    if blocked == HOLIDAY:
        name = holiday_name(cal.holidays, local.date()) if cal.holidays is not None else ""
        return HOLIDAY, f"{local.date()} is a public holiday in {zone.key} ({name})"
    if not cal.bypass and not _in_plan(local, cal.window_plan):
        windows = "; ".join(s.text for s in cal.specs)
        return OUTSIDE_WINDOW, f"{_fmt(now, zone)} is outside the calling windows ({windows})"
    if not _in_plan(local, cal.plan):
        return SLOT, f"{_fmt(now, zone)} is outside the callee's {preferred_slot} slot"
    mode = " (demo_any_hour, fiction number)" if cal.bypass else ""
    return OK, f"{_fmt(now, zone)} is allowed{mode}"


def check_call(now: datetime, *, number: str, zone: ZoneInfo | Zones, schedule: Schedule,
               attempts_utc: Iterable[datetime] = (), last_refusal_utc: datetime | None = None,
               preferred_slot: str | None = None, slots_hours: dict[str, str] | None = None,
               opted_out: bool = False) -> Verdict:
    """May `number` be called at `now`? Checks, in this order: opt-out, refusal cooldown,
    attempt cap, then (unless demo_any_hour for a fiction number) blackout, holiday, window,
    and finally the preferred slot. `next_allowed` is the earliest instant at which every rule
    would allow the call given the same history (no new attempts), or None if never."""
    now = _aware_utc(now, "now")
    _schedule_rules(schedule)  # a malformed schedule fails first, whatever the history
    if schedule.max_attempts_per_30_days < 0 or schedule.refusal_cooldown_days < 0:
        raise ComplianceError("schedule: max_attempts_per_30_days and refusal_cooldown_days must be >= 0")
    if opted_out:
        return Verdict(False, OPTED_OUT, f"{number} opted out: never call it again", None)
    slot = _slot_span(preferred_slot, slots_hours)
    if isinstance(slot, Verdict):
        return slot
    zones = zones_of(zone)  # a call must be allowed in each zone the number may be in
    cal = _calendar(schedule, number, zone, slot)
    earliest, reason, detail = _history_block(now, zones[0], schedule, attempts_utc, last_refusal_utc)
    if earliest is None:
        return Verdict(False, reason, detail, None)
    if reason == OK:
        reason, detail = _calendar_block(now, cal, preferred_slot)
        if reason == OK:
            return Verdict(True, OK, detail, None)
    nxt = _next_open(earliest, zones, cal.is_open, cal.plan)
    detail += f"; next allowed {_fmt(nxt, zones[0])}" if nxt else "; no allowed time found within a year"
    if nxt is None and len(zones) > 1 and not cal.note:  # e.g. a +7 mobile: from Kaliningrad to Kamchatka
        detail += ": give the contact its own time zone (the list's timezone column)"
    return Verdict(False, reason, detail, nxt)
