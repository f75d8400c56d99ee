"""Calling rules: windows, holidays, blackouts, DST, caps, cooldown, slots, zones. `now` is passed in."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ivr.compliance.calling_rules import (
    ATTEMPT_CAP, BLACKOUT, HOLIDAY, OK, OPTED_OUT, OUTSIDE_WINDOW, REFUSAL_COOLDOWN, SLOT,
    Verdict, callee_zone, check_call, is_fiction_number, parse_windows,
)
from ivr.compliance.callee_place import zones_of
from ivr.config import Schedule, Window
from ivr.errors import ComplianceError

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
NUM = "+33142000000"  # a Paris landline
FICTION = "+33199000042"
ALL_WEEK = [Window(days="mon-sun", hours=["10:00-13:00", "14:00-20:00"])]


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A Paris wall time as the UTC instant the rules receive."""
    return datetime(y, mo, d, h, mi, s, tzinfo=PARIS).astimezone(UTC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def check(now: datetime, schedule: Schedule | None = None, number: str = NUM,
          zone: ZoneInfo = PARIS, **kw) -> Verdict:
    return check_call(now, number=number, zone=zone, schedule=schedule or Schedule(), **kw)


# --- windows -------------------------------------------------------------------------------

def test_first_minute_of_window_is_allowed_and_the_one_before_is_not() -> None:
    v = check(paris(2026, 6, 15, 10, 0))  # Monday
    assert (v.allowed, v.reason, v.next_allowed) == (True, OK, None)
    v = check(paris(2026, 6, 15, 9, 59, 59))
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW)
    assert v.next_allowed == paris(2026, 6, 15, 10, 0)


def test_last_minute_allowed_and_20h_refused() -> None:
    assert check(paris(2026, 6, 15, 19, 59)).allowed
    assert check(paris(2026, 6, 15, 19, 59, 59)).allowed
    v = check(paris(2026, 6, 15, 20, 0))
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW)
    assert v.next_allowed == paris(2026, 6, 16, 10, 0)
    assert v.next_allowed == utc(2026, 6, 16, 8, 0)  # CEST is UTC+2


def test_lunch_gap() -> None:
    assert check(paris(2026, 6, 15, 12, 59)).allowed
    for minute in (0, 30, 59):
        v = check(paris(2026, 6, 15, 13, minute))
        assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW)
        assert v.next_allowed == paris(2026, 6, 15, 14, 0)
    assert check(paris(2026, 6, 15, 14, 0)).allowed


@pytest.mark.parametrize("day", [13, 14])  # Saturday 13 and Sunday 14 June 2026
def test_weekend_refused_until_monday(day: int) -> None:
    v = check(paris(2026, 6, day, 11, 0))
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW)
    assert v.next_allowed == paris(2026, 6, 15, 10, 0)
    assert "sat" in v.detail or "sun" in v.detail


def test_friday_20h_next_is_monday_10h() -> None:
    v = check(paris(2026, 7, 10, 20, 0))
    assert v.next_allowed == paris(2026, 7, 13, 10, 0)


def test_friday_20h_next_is_tuesday_when_monday_is_pentecost() -> None:
    v = check(paris(2026, 5, 22, 20, 0))
    assert v.next_allowed == paris(2026, 5, 26, 10, 0)


def test_weekend_window_when_configured() -> None:
    sch = Schedule(windows=[Window(days="sat", hours=["10:00-12:00"])])
    assert check(paris(2026, 6, 13, 11, 0), sch).allowed
    v = check(paris(2026, 6, 15, 11, 0), sch)  # Monday: not in a sat-only window
    assert v.reason == OUTSIDE_WINDOW and v.next_allowed == paris(2026, 6, 20, 10, 0)


def test_window_is_judged_in_the_callee_zone() -> None:
    now = utc(2026, 7, 10, 6, 30)  # 10:30 in Réunion (UTC+4), 08:30 in Paris
    assert check(now, number="+262262123456", zone=REUNION).allowed
    v = check(now)
    assert v.reason == OUTSIDE_WINDOW and v.next_allowed == paris(2026, 7, 10, 10, 0)


# --- DST (both changes fall on a Sunday, so use a mon-sun window) ------------------------------

def test_dst_spring_forward_day() -> None:
    sch = Schedule(windows=ALL_WEEK)
    # Saturday 28 March: CET (UTC+1); Sunday 29 March: CEST (UTC+2).
    assert check(utc(2026, 3, 28, 9, 0), sch).allowed  # 10:00 CET
    assert not check(utc(2026, 3, 28, 8, 59), sch).allowed  # 09:59 CET
    assert check(utc(2026, 3, 29, 8, 0), sch).allowed  # 10:00 CEST
    v = check(utc(2026, 3, 29, 7, 59), sch)  # 09:59 CEST (would be 08:59 with the old offset)
    assert v.reason == OUTSIDE_WINDOW and v.next_allowed == utc(2026, 3, 29, 8, 0)
    assert check(utc(2026, 3, 29, 17, 59), sch).allowed  # 19:59 CEST
    assert check(utc(2026, 3, 29, 18, 0), sch).reason == OUTSIDE_WINDOW  # 20:00 CEST
    # Saturday 20:00 CET -> Sunday 10:00 CEST, only 13 hours later.
    assert check(utc(2026, 3, 28, 19, 0), sch).next_allowed == utc(2026, 3, 29, 8, 0)


def test_dst_fall_back_day() -> None:
    sch = Schedule(windows=ALL_WEEK)
    assert check(utc(2026, 10, 24, 8, 30), sch).allowed  # Saturday 10:30 CEST
    v = check(utc(2026, 10, 25, 8, 30), sch)  # Sunday 09:30 CET: same UTC time, not allowed
    assert v.reason == OUTSIDE_WINDOW and v.next_allowed == utc(2026, 10, 25, 9, 0)
    assert check(utc(2026, 10, 25, 18, 59), sch).allowed  # 19:59 CET
    assert not check(utc(2026, 10, 25, 19, 0), sch).allowed  # 20:00 CET
    # Saturday 20:00 CEST -> Sunday 10:00 CET, 15 hours later.
    assert check(utc(2026, 10, 24, 18, 0), sch).next_allowed == utc(2026, 10, 25, 9, 0)


def test_dst_default_weekday_window_on_the_monday_after() -> None:
    assert check(utc(2026, 3, 27, 9, 0)).allowed  # Friday 10:00 CET
    assert not check(utc(2026, 3, 30, 7, 30)).allowed  # Monday 09:30 CEST
    assert check(utc(2026, 3, 30, 8, 0)).allowed  # Monday 10:00 CEST
    assert check(utc(2026, 10, 23, 20, 0)).next_allowed == utc(2026, 10, 26, 9, 0)


def test_window_starting_in_the_spring_forward_gap_opens_at_the_transition() -> None:
    sch = Schedule(windows=[Window(days="mon-sun", hours=["02:30-04:00"])])
    v = check(utc(2026, 3, 29, 0, 50), sch)  # 01:50 CET; 02:30 does not exist that night
    assert v.next_allowed == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first instant >= 02:30
    assert check(v.next_allowed, sch).allowed


def test_window_inside_the_repeated_fall_back_hour_opens_twice() -> None:
    sch = Schedule(windows=[Window(days="mon-sun", hours=["02:30-03:00"])])
    assert check(utc(2026, 10, 25, 0, 30), sch).allowed  # 02:30 CEST
    v = check(utc(2026, 10, 25, 1, 10), sch)  # 02:10 CET
    assert not v.allowed and v.next_allowed == utc(2026, 10, 25, 1, 30)  # 02:30 CET


def test_next_allowed_is_allowed_and_nothing_earlier_is() -> None:
    """Property over the two DST weeks: next_allowed is the first allowed instant."""
    for schedule in (Schedule(), Schedule(windows=ALL_WEEK)):
        for start in (utc(2026, 3, 23), utc(2026, 10, 19)):
            for step in range(0, 14 * 24 * 60, 97):
                now = start + timedelta(minutes=step)
                v = check(now, schedule)
                if v.allowed:
                    continue
                assert v.next_allowed is not None and v.next_allowed > now
                assert check(v.next_allowed, schedule).allowed, (now, v)
                assert not check(v.next_allowed - timedelta(seconds=1), schedule).allowed, (now, v)


# --- holidays and blackouts ----------------------------------------------------------------

def test_bastille_day_is_a_holiday() -> None:
    v = check(paris(2026, 7, 14, 11, 0))
    assert (v.allowed, v.reason) == (False, HOLIDAY)
    assert v.next_allowed == paris(2026, 7, 15, 10, 0)
    assert "2026-07-14" in v.detail


def test_ascension_is_computed_by_holidays() -> None:
    v = check(paris(2026, 5, 14, 15, 0))  # Thursday
    assert v.reason == HOLIDAY and v.next_allowed == paris(2026, 5, 15, 10, 0)


def test_holidays_can_be_disabled() -> None:
    assert check(paris(2026, 7, 14, 11, 0), Schedule(skip_holidays=False)).allowed


def test_overseas_holiday_uses_the_subdivision() -> None:
    # 20 December (abolition of slavery) is a holiday in Réunion only.
    v = check(datetime(2027, 12, 20, 11, 0, tzinfo=REUNION), number="+262262123456", zone=REUNION)
    assert v.reason == HOLIDAY
    assert check(paris(2027, 12, 20, 11, 0)).allowed


@pytest.mark.parametrize("country", ["FR", "fr", "FRA", " fra "])
def test_frances_calendar_however_written_keeps_the_regions_holidays(country: str) -> None:
    """FRA (France's alpha-3, which the holidays package takes too) kept the national
    calendar alone: Réunion's 20 December and Alsace's Good Friday were call days."""
    sch = Schedule(holidays_country=country)
    v = check(datetime(2027, 12, 20, 11, 0, tzinfo=REUNION), sch, number="+262262123456",
              zone=REUNION)
    assert v.reason == HOLIDAY
    assert check(paris(2026, 4, 3, 11, 0), sch, number="+33388123456").reason == HOLIDAY
    assert check(paris(2026, 4, 3, 11, 0), sch).allowed  # Good Friday, elsewhere


def test_blackout_date() -> None:
    sch = Schedule(blackout_dates=["2026-03-13", "2026-03-16"])
    v = check(paris(2026, 3, 13, 11, 0), sch)  # Friday
    assert (v.allowed, v.reason) == (False, BLACKOUT)
    assert v.next_allowed == paris(2026, 3, 17, 10, 0)  # Monday 16 is blacked out too
    assert check(paris(2026, 3, 12, 11, 0), sch).allowed


def test_bad_blackout_date_raises() -> None:
    with pytest.raises(ComplianceError, match="2026-13-01"):
        check(paris(2026, 3, 12, 11, 0), Schedule(blackout_dates=["2026-13-01"]))


# --- attempt cap and refusal cooldown ------------------------------------------------------

NOW = paris(2026, 6, 17, 11, 0)  # Wednesday, inside the window


def test_cap_attempt_exactly_30_days_old_no_longer_counts() -> None:
    attempts = [NOW - timedelta(days=30)] + [NOW - timedelta(days=d) for d in (10, 5, 1)]
    assert check(NOW, attempts_utc=attempts).allowed


def test_cap_attempt_29_days_23h59_old_still_counts() -> None:
    oldest = NOW - timedelta(days=29, hours=23, minutes=59)
    attempts = [oldest] + [NOW - timedelta(days=d) for d in (10, 5, 1)]
    v = check(NOW, attempts_utc=attempts)
    assert (v.allowed, v.reason) == (False, ATTEMPT_CAP)
    assert v.next_allowed == oldest + timedelta(days=30) == NOW + timedelta(minutes=1)


def test_cap_counts_only_the_last_30_days() -> None:
    attempts = [NOW - timedelta(days=d) for d in (45, 31, 20, 2, 1)]
    assert check(NOW, attempts_utc=attempts).allowed  # 3 in the window
    assert check(NOW, attempts_utc=attempts[2:4]).allowed


def test_cap_frees_outside_the_window_then_waits_for_the_next_opening() -> None:
    oldest = paris(2026, 5, 18, 21, 0)  # ages out on Wednesday 17 June 21:00, after 20:00
    attempts = [oldest, NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=1)]
    v = check(NOW, attempts_utc=attempts)
    assert v.reason == ATTEMPT_CAP and v.next_allowed == paris(2026, 6, 18, 10, 0)


def test_cap_with_more_attempts_than_the_cap() -> None:
    attempts = [NOW - timedelta(days=d) for d in (29, 28, 3, 2, 1)]
    v = check(NOW, attempts_utc=attempts)
    assert v.reason == ATTEMPT_CAP
    assert v.next_allowed == NOW - timedelta(days=28) + timedelta(days=30)  # 2 must age out


def test_cap_is_configurable() -> None:
    attempts = [NOW - timedelta(days=1)]
    assert check(NOW, Schedule(max_attempts_per_30_days=1), attempts_utc=attempts).reason == ATTEMPT_CAP
    assert check(NOW, Schedule(max_attempts_per_30_days=2), attempts_utc=attempts).allowed


def test_refusal_cooldown_boundary() -> None:
    refusal = NOW - timedelta(days=60)
    assert check(NOW, last_refusal_utc=refusal).allowed  # exactly 60 days: allowed again
    refusal = NOW - timedelta(days=60) + timedelta(seconds=1)
    v = check(NOW, last_refusal_utc=refusal)
    assert (v.allowed, v.reason) == (False, REFUSAL_COOLDOWN)
    assert v.next_allowed == refusal + timedelta(days=60)


def test_refusal_cooldown_day_59_blocked_and_end_rounded_to_a_window() -> None:
    refusal = paris(2026, 4, 18, 22, 0)  # Saturday night; +60 days = Wednesday 17 June 22:00
    v = check(NOW, last_refusal_utc=refusal)
    assert v.reason == REFUSAL_COOLDOWN and v.next_allowed == paris(2026, 6, 18, 10, 0)
    assert check(paris(2026, 6, 18, 10, 0), last_refusal_utc=refusal).allowed


def test_opted_out_is_never_allowed() -> None:
    v = check(NOW, opted_out=True)
    assert (v.allowed, v.reason, v.next_allowed) == (False, OPTED_OUT, None)


# --- preferred slot ------------------------------------------------------------------------

def test_morning_slot() -> None:
    assert check(NOW, preferred_slot="morning").allowed
    v = check(paris(2026, 6, 17, 15, 0), preferred_slot="morning")
    assert (v.allowed, v.reason) == (False, SLOT)
    assert v.next_allowed == paris(2026, 6, 18, 10, 0)


def test_evening_slot_edges() -> None:
    assert check(paris(2026, 6, 17, 17, 0), preferred_slot="evening").allowed
    assert check(paris(2026, 6, 17, 19, 59), preferred_slot="evening").allowed
    v = check(paris(2026, 6, 17, 16, 59), preferred_slot="evening")
    assert v.reason == SLOT and v.next_allowed == paris(2026, 6, 17, 17, 0)
    assert check(paris(2026, 6, 17, 20, 0), preferred_slot="evening").reason == OUTSIDE_WINDOW


def test_slot_hours_override_and_never_widen_the_window() -> None:
    hours = {"evening": "18:00-22:00"}
    v = check(paris(2026, 6, 17, 17, 30), preferred_slot="evening", slots_hours=hours)
    assert v.reason == SLOT and v.next_allowed == paris(2026, 6, 17, 18, 0)
    assert check(paris(2026, 6, 17, 21, 0), preferred_slot="evening", slots_hours=hours).reason \
        == OUTSIDE_WINDOW


def test_unknown_slot_fails_closed() -> None:
    v = check(NOW, preferred_slot="night")
    assert (v.allowed, v.reason, v.next_allowed) == (False, SLOT, None)
    assert "night" in v.detail


# --- demo_any_hour and fiction numbers -----------------------------------------------------

@pytest.mark.parametrize(("number", "expected"), [
    ("+33199000000", True), ("+33199009999", True), ("+33199000042", True),
    ("+33199010000", False), ("+33199100000", False), ("+3319900000", False),
    ("+331990000000", False), ("+33142000000", False), ("0199000000", False)])
def test_is_fiction_number(number: str, expected: bool) -> None:
    assert is_fiction_number(number) is expected


def test_demo_any_hour_only_for_fiction_numbers() -> None:
    sch = Schedule(demo_any_hour=True, blackout_dates=["2026-06-14"])
    sunday_3am = paris(2026, 6, 14, 3, 0)  # weekend, night and blackout at once
    assert check(sunday_3am, sch, number=FICTION).allowed
    assert check(paris(2026, 7, 14, 3, 0), sch, number=FICTION).allowed  # holiday
    v = check(sunday_3am, sch, number=NUM)
    assert v.reason == BLACKOUT and not v.allowed
    assert not check(sunday_3am, Schedule(), number=FICTION).allowed  # flag off


def test_demo_any_hour_keeps_caps_and_cooldown() -> None:
    sch = Schedule(demo_any_hour=True)
    night = paris(2026, 6, 14, 3, 0)
    attempts = [night - timedelta(hours=h) for h in (1, 2, 3, 4)]
    v = check(night, sch, number=FICTION, attempts_utc=attempts)
    assert v.reason == ATTEMPT_CAP and v.next_allowed == attempts[-1] + timedelta(days=30)
    v = check(night, sch, number=FICTION, last_refusal_utc=night - timedelta(days=1))
    assert v.reason == REFUSAL_COOLDOWN and v.next_allowed == night + timedelta(days=59)


# --- callee zone ---------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "contact_tz", "expected"), [
    ("+33612345678", "America/Martinique", "America/Martinique"),  # contact's own tz wins
    ("+33142000000", "Not/AZone", "Europe/Paris"),  # invalid contact tz: from the number
    ("+33612345678", None, "Europe/Paris"),
    ("+12125551234", None, "America/New_York"),
    ("+12125551234", "", "America/New_York"),
    ("+262262123456", None, "Indian/Reunion"),
    ("+262692123456", None, "Indian/Reunion"),  # phonenumbers says Mayotte or Réunion
    ("+590590123456", None, "America/Guadeloupe"),
    ("not a number", None, "Europe/Paris"),  # default
    ("+80012345678", None, "Europe/Paris"),  # international freephone: no zone, default
])
def test_callee_zone(number: str, contact_tz: str | None, expected: str) -> None:
    # one zone (a listed overseas one carries its region's holidays: Zones.subdivs)
    assert zones_of(callee_zone(number, contact_tz, "Europe/Paris")) == (ZoneInfo(expected),)


def test_a_mainland_landlines_listed_zone_is_added_to_pariss() -> None:
    # the line rings in mainland France: Paris's clock stays, the row's must allow it too
    assert zones_of(callee_zone("+33142000000", "America/Martinique", "Europe/Paris")) == (
        ZoneInfo("Europe/Paris"), ZoneInfo("America/Martinique"))


def test_callee_zone_prefers_the_default_among_several_candidates() -> None:
    # A UK mobile maps to London, Guernsey, Jersey and Isle of Man.
    assert callee_zone("+447911123456", None, "Europe/London") == ZoneInfo("Europe/London")
    assert callee_zone("+447911123456", None, "Europe/Paris").key.startswith("Europe/")


def test_callee_zone_default_is_used_when_number_gives_nothing() -> None:
    assert callee_zone("garbage", None, "Europe/Brussels") == ZoneInfo("Europe/Brussels")
    with pytest.raises(ComplianceError, match="Mars/Olympus"):
        callee_zone("garbage", None, "Mars/Olympus")


# --- window syntax -------------------------------------------------------------------------

def test_parse_windows_accepts_the_documented_forms() -> None:
    specs = parse_windows([
        Window(days="mon-fri", hours=["10:00-13:00", "14:00-20:00"]),
        Window(days="sat", hours=["10:00-12:00"]),
        Window(days="mon,wed,fri", hours=["18:00-24:00"]),
        Window(days="MON-SUN", hours=["00:00-24:00"]),
        Window(days="mon-tue, fri", hours=["09:30-10:15"]),
    ])
    assert specs[0].days == frozenset(range(5)) and specs[0].spans == ((36000, 46800), (50400, 72000))
    assert specs[1].days == frozenset({5})
    assert specs[2].days == frozenset({0, 2, 4}) and specs[2].spans == ((64800, 86400),)
    assert specs[3].days == frozenset(range(7)) and specs[3].spans == ((0, 86400),)
    assert specs[4].days == frozenset({0, 1, 4}) and specs[4].spans == ((34200, 36900),)


@pytest.mark.parametrize(("days", "hours", "bad"), [
    ("monday", ["10:00-13:00"], "monday"),
    ("mon-", ["10:00-13:00"], "mon-"),
    ("fri-mon", ["10:00-13:00"], "fri-mon"),
    ("", ["10:00-13:00"], "''"),
    ("mon-fri", ["10-13"], "10-13"),
    ("mon-fri", ["10:00-25:00"], "10:00-25:00"),
    ("mon-fri", ["13:00-10:00"], "13:00-10:00"),
    ("mon-fri", ["10:60-11:00"], "10:60-11:00"),
    ("mon-fri", ["24:00-24:00"], "24:00-24:00"),
    ("mon-fri", ["9:00-13:00"], "9:00-13:00"),
    ("mon-fri", [], "[]"),
])
def test_parse_windows_rejects_bad_syntax(days: str, hours: list[str], bad: str) -> None:
    with pytest.raises(ComplianceError) as info:
        parse_windows([Window(days=days, hours=hours)])
    message = str(info.value)
    assert bad in message and "expected" in message and "\n" not in message


def test_check_call_refuses_bad_or_missing_windows() -> None:
    with pytest.raises(ComplianceError, match="windows is empty"):
        check(NOW, Schedule(windows=[]))
    with pytest.raises(ComplianceError, match="10h-13h"):
        check(NOW, Schedule(windows=[Window(hours=["10h-13h"])]))


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(datetime(2026, 6, 17, 11, 0))
