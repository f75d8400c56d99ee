"""The quick proof that several zones' calling hours never meet (zones_meet): it never hides
an open instant, and the next allowed time is the exact search's, with it or without it."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ivr.compliance import calling_rules, zones_meet
from ivr.config import Schedule, Window

Z = ZoneInfo
SETS = [  # a +1 number phonenumbers cannot place; Russia's mobiles; near neighbours
    tuple(Z(k) for k in ("Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles",
                         "America/Denver", "America/Chicago", "America/New_York",
                         "America/Halifax", "America/St_Johns", "Pacific/Guam")),
    tuple(Z(k) for k in ("Europe/Kaliningrad", "Europe/Moscow", "Asia/Yekaterinburg",
                         "Asia/Vladivostok", "Asia/Kamchatka")),
    (Z("Europe/Paris"), Z("Europe/London")),
    (Z("Australia/Perth"), Z("Australia/Sydney"), Z("Australia/Adelaide")),
    (Z("America/Guadeloupe"), Z("Europe/Paris")),
    (Z("America/New_York"), Z("America/Chicago")),
]
SCHEDULES = [
    Schedule(),  # mon-fri 10:00-13:00 and 14:00-20:00
    Schedule(windows=[Window(days="mon-sun", hours=["00:00-24:00"])]),
    Schedule(windows=[Window(days="sat", hours=["19:00-20:00"])]),
]
NOW = datetime(2026, 3, 27, 9, 0, tzinfo=timezone.utc)  # two days before Europe's DST


def _calendar(schedule: Schedule, zones: tuple[ZoneInfo, ...]) -> calling_rules._Calendar:
    return calling_rules._calendar(schedule, "+12684641234",
                                   calling_rules.Zones(zones) if len(zones) > 1 else zones[0],
                                   None)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("zones", SETS, ids=lambda zs: f"{len(zs)}-zones-{zs[0].key}")
def test_an_instant_open_in_every_zone_is_one_the_proof_keeps(
        schedule: Schedule, zones: tuple[ZoneInfo, ...]) -> None:
    cal = _calendar(schedule, zones)
    bits = zones_meet.meet_bits(NOW, zones, cal.plan, calling_rules.SEARCH_HORIZON_DAYS)
    rnd = random.Random(9)
    instants = [NOW + timedelta(minutes=rnd.randrange(400 * 24 * 60)) for _ in range(3000)]
    opened = [t for t in instants if cal.is_open(t)]
    assert all(bits >> zones_meet.week_second(t) & 1 for t in opened)
    if zones[1].key == "Europe/London" and schedule != SCHEDULES[2]:  # an hour apart: they
        assert opened and zones_meet.may_meet(NOW, zones, cal.plan, 400)  # meet but in 1 h


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("zones", SETS, ids=lambda zs: f"{len(zs)}-zones-{zs[0].key}")
def test_the_next_allowed_time_is_the_exact_searchs(
        schedule: Schedule, zones: tuple[ZoneInfo, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    cal = _calendar(schedule, zones)
    starts = [NOW, NOW + timedelta(days=200, hours=15)]
    fast = [calling_rules._next_open(t, zones, cal.is_open, cal.plan) for t in starts]
    monkeypatch.setattr(calling_rules, "may_meet", lambda *a: True)
    exact = [calling_rules._next_open(t, zones, cal.is_open, cal.plan) for t in starts]
    assert fast == exact
    if zones == SETS[0] and schedule == SCHEDULES[0]:  # Hawaii to Guam: never, proven
        assert exact == [None, None]
        assert not zones_meet.may_meet(NOW, zones, cal.plan, 400)


def test_the_week_in_utc_is_the_wall_clocks_moved_by_the_offset() -> None:
    """Monday 10:00-11:00 wall time at UTC+2 is Monday 08:00-09:00 UTC; at UTC-10 it is
    Monday 20:00-21:00 UTC; Monday 00:00-01:00 at UTC+2 is Sunday 22:00-23:00 UTC."""
    def utc_hours(spans: dict[int, list[tuple[int, int]]], offset_h: int) -> list[int]:
        plan = tuple(tuple(spans.get(wd, [])) for wd in range(7))
        bits = zones_meet._in_utc(zones_meet._week_bits(plan), offset_h * 3600)
        return [h for h in range(7 * 24) if bits >> (h * 3600) & 1]
    assert utc_hours({0: [(36000, 39600)]}, 2) == [8]
    assert utc_hours({0: [(36000, 39600)]}, -10) == [20]
    assert utc_hours({0: [(0, 3600)]}, 2) == [6 * 24 + 22]
    assert zones_meet.week_second(datetime(2026, 12, 7, 0, 0, 5, tzinfo=timezone.utc)) == 5


ODD = [Z(k) for k in ("Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kathmandu",
                      "Africa/Casablanca", "America/St_Johns", "Pacific/Apia", "Pacific/Niue",
                      "Europe/Paris", "America/Santiago", "Asia/Tehran")]


@pytest.mark.parametrize("seed", range(12))
def test_random_hours_and_odd_zones_keep_every_open_instant_and_the_exact_answer(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weekly hours (minute edges, some days shut) over zones with half-hour and
    45-minute offsets, DST both ways, and a Ramadan suspension: every instant open in all of
    them is in the bits, and the next allowed time is the exact search's."""
    rnd = random.Random(seed)
    zones = tuple(rnd.sample(ODD, rnd.choice((2, 3))))
    plan = {wd: [] if rnd.random() < 0.3 else sorted(
        (a, a + rnd.randrange(30, 600) * 60) for a in [rnd.randrange(0, 18 * 60) * 60])
        for wd in range(7)}
    cal = calling_rules._Calendar(zones, "", (), frozenset(), False, plan, plan, None)
    bits = zones_meet.meet_bits(NOW, zones, plan, calling_rules.SEARCH_HORIZON_DAYS)
    instants = [NOW + timedelta(minutes=rnd.randrange(400 * 24 * 60)) for _ in range(4000)]
    assert all(bits >> zones_meet.week_second(t) & 1 for t in instants if cal.is_open(t))
    start = NOW + timedelta(days=rnd.randrange(300), minutes=rnd.randrange(1440))
    fast = calling_rules._next_open(start, zones, cal.is_open, plan)
    monkeypatch.setattr(calling_rules, "may_meet", lambda *a: True)
    assert fast == calling_rules._next_open(start, zones, cal.is_open, plan)
