"""A list's timezone column may not loosen what the number itself says.

A CRM export with Europe/Paris on every row made a Guadeloupe mobile callable at 10:05 Paris,
05:05 in Guadeloupe; a mainland mobile marked America/Guadeloupe was judged on Guadeloupe's
clock but rung on 27 May, Guadeloupe's abolition day. Now, when the number alone says where
its line is (an overseas number, an overseas 09 box, a mainland 01-05 landline), the listed
zone and the number's must each allow a call and both places' holidays apply; a listed
overseas zone brings its region's holidays to any number. Reasons stay one line naming the
zone that refuses. Pure rules, plus the plan and the claim on both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import fill, make_config
from ivr.campaign.planning import claim, plan
from ivr.compliance.calling_rules import (
    HOLIDAY, OK, OUTSIDE_WINDOW, Verdict, callee_zone, check_call)
from ivr.compliance.callee_place import zones_of
from ivr.config import Schedule
from ivr.store import Store

PARIS, GUADELOUPE = ZoneInfo("Europe/Paris"), ZoneInfo("America/Guadeloupe")
MARTINIQUE, REUNION = ZoneInfo("America/Martinique"), ZoneInfo("Indian/Reunion")
GP_MOBILE, GP_BOX = "+590690123456", "+33947501234"  # the box: +590 9 47 50.., Guadeloupe's
RE_MOBILE = "+262692123456"
ALSACE, MOBILE, PARIS_LINE = "+33388123456", "+33612345678", "+33142000000"


def at(zone: ZoneInfo, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=zone).astimezone(timezone.utc)


def verdict(number: str, tz: str | None, now: datetime) -> Verdict:
    zone = callee_zone(number, tz, "Europe/Paris")
    return check_call(now, number=number, zone=zone, schedule=Schedule())


@pytest.mark.parametrize(("number", "own", "now", "refusal", "nxt"), [
    # Tuesday 1 December 2026: 10:05 in Paris is 05:05 in Guadeloupe
    (GP_MOBILE, GUADELOUPE, at(PARIS, 12, 1, 10, 5), "tue 2026-12-01 05:05 America/Guadeloupe",
     at(GUADELOUPE, 12, 1, 10, 0)),
    (GP_BOX, GUADELOUPE, at(PARIS, 12, 1, 10, 5), "tue 2026-12-01 05:05 America/Guadeloupe",
     at(GUADELOUPE, 12, 1, 10, 0)),
    # 17:30 in Paris is 20:30 in Réunion; next, 14:00 there (11:00 in Paris: 13:00 is lunch)
    (RE_MOBILE, REUNION, at(PARIS, 12, 1, 17, 30), "tue 2026-12-01 20:30 Indian/Reunion",
     at(REUNION, 12, 2, 14, 0)),
])
def test_a_listed_paris_does_not_loosen_an_overseas_numbers_clock(
        number: str, own: ZoneInfo, now: datetime, refusal: str, nxt: datetime) -> None:
    v = verdict(number, "Europe/Paris", now)
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW), v.detail
    assert v.detail.startswith(f"{refusal} is outside") and v.next_allowed == nxt
    assert "\n" not in v.detail and "list row Europe/Paris: each must allow it" in v.detail
    assert zones_of(callee_zone(number, "Europe/Paris", "Europe/Paris")) == (own, PARIS)
    if own == GUADELOUPE:  # the row without the column waits as long
        assert verdict(number, None, now).next_allowed == nxt


def test_the_listed_zone_refuses_too_and_is_named() -> None:
    # 19:30 in Guadeloupe is 00:30 on Wednesday in Paris: the listed zone refuses
    v = verdict(GP_MOBILE, "Europe/Paris", at(GUADELOUPE, 12, 1, 19, 30))
    assert not v.allowed and v.detail.startswith("wed 2026-12-02 00:30 Europe/Paris is outside")
    assert v.next_allowed == at(GUADELOUPE, 12, 2, 10, 0)  # 15:00 in Paris
    assert verdict(GP_MOBILE, "Europe/Paris", at(GUADELOUPE, 12, 1, 10, 0)).allowed
    # the number's own zone, listed: nothing changes
    assert verdict(GP_MOBILE, "America/Guadeloupe", at(GUADELOUPE, 12, 1, 10, 0)).allowed
    assert zones_of(callee_zone(GP_MOBILE, "America/Guadeloupe", "Europe/Paris")) == (GUADELOUPE,)


def test_an_alsace_landline_listed_in_guadeloupe_keeps_both_calendars() -> None:
    v = verdict(ALSACE, "America/Guadeloupe", at(PARIS, 12, 1, 10, 5))  # 05:05 there
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW) and "America/Guadeloupe" in v.detail
    # 27 May is Guadeloupe's abolition day; 3 April 2026, Good Friday, Alsace's (and Guadeloupe's)
    for month, day in ((5, 27), (4, 3)):
        v = verdict(ALSACE, "America/Guadeloupe", at(GUADELOUPE, month, day, 10, 30))
        assert (v.allowed, v.reason) == (False, HOLIDAY), v.detail
    assert verdict(ALSACE, "America/Guadeloupe", at(GUADELOUPE, 5, 26, 10, 30)).reason == OK
    # unlisted, 26 December stays Alsace's (2025: a Friday)
    assert verdict(ALSACE, None, datetime(2025, 12, 26, 11, 0, tzinfo=PARIS)).reason == HOLIDAY


def test_a_listed_overseas_zone_brings_its_holidays() -> None:
    # a mainland mobile whose owner lives in Guadeloupe: its clock, and its 27 May
    v = verdict(MOBILE, "America/Guadeloupe", at(GUADELOUPE, 5, 27, 11, 0))
    assert (v.allowed, v.reason) == (False, HOLIDAY)
    assert v.detail.startswith("2026-05-27 is a public holiday in America/Guadeloupe")
    assert v.next_allowed == at(GUADELOUPE, 5, 28, 10, 0)
    assert verdict(MOBILE, "America/Guadeloupe", at(GUADELOUPE, 5, 26, 11, 0)).allowed
    assert not verdict(MOBILE, "America/Guadeloupe", at(PARIS, 5, 26, 11, 0)).allowed  # 05:00
    # a Paris landline listed in Martinique (its 22 May); a Guadeloupe mobile listed there
    # (the same clock: the number's zone names it) too
    for number in (PARIS_LINE, GP_MOBILE):
        v = verdict(number, "America/Martinique", at(MARTINIQUE, 5, 22, 11, 0))
        assert (v.allowed, v.reason) == (False, HOLIDAY), number
    assert zones_of(callee_zone(GP_MOBILE, "America/Martinique", "Europe/Paris")) == (GUADELOUPE,)
    # a mainland zone listed for a mobile: as before, that zone alone
    assert callee_zone(MOBILE, "Europe/Paris", "Europe/Paris") == PARIS
    assert verdict(MOBILE, "Europe/Paris", at(PARIS, 5, 27, 11, 0)).allowed


def cfg():
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"})


def test_the_plan_and_the_claim_wait_for_the_numbers_own_clock(store: Store) -> None:
    s = fill(store, GP_MOBILE, "+590690123457", at=datetime(2026, 11, 1, tzinfo=timezone.utc),
             timezone="Europe/Paris")
    fill(s, "+590690123458", at=datetime(2026, 11, 1, tzinfo=timezone.utc))
    now = at(PARIS, 12, 1, 10, 5)  # 05:05 in Guadeloupe
    p = plan(cfg(), s, now)
    assert p.due == []
    assert {v.reason for _, v in p.waiting} == {OUTSIDE_WINDOW}
    assert {v.next_allowed for _, v in p.waiting} == {at(GUADELOUPE, 12, 1, 10, 0)}
    listed = [v for c, v in p.waiting if c["timezone"]]
    assert len(listed) == 2 and all("America/Guadeloupe is outside" in v.detail for v in listed)
    row = s.one("SELECT * FROM contacts WHERE number = ?", (GP_MOBILE,))
    got = claim(cfg(), s, row, "node-a", now)
    assert got.call is None and not got.decision.allowed and s.open_calls() == []
    later = at(GUADELOUPE, 12, 1, 10, 0) + timedelta(minutes=5)
    assert len(plan(cfg(), s, later).due) == 3


def test_a_mainland_landline_listed_abroad_keeps_pariss_clock() -> None:
    """A geographic 01-05 line is ported only within its zone: it rings in mainland France.
    A CRM row naming New York made it callable at 21:30 Paris (15:30 there)."""
    late = at(PARIS, 12, 1, 21, 30)
    v = verdict(PARIS_LINE, "America/New_York", late)
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW), v.detail
    assert v.detail.startswith("tue 2026-12-01 21:30 Europe/Paris is outside"), v.detail
    assert zones_of(callee_zone(PARIS_LINE, "America/New_York", "Europe/Paris")) == (
        PARIS, ZoneInfo("America/New_York"))
    # a mobile may be anywhere its row says; the fiction range (the sandbox's callees) too
    for number in (MOBILE, "+33199000010"):
        assert verdict(number, "America/New_York", late).allowed, number
