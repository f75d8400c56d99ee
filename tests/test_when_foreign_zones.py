"""A foreign number whose zones disagree is called only when each of them allows it.

With contacts.allow_countries, a +34 6 mobile may be in Madrid or the Canaries (an hour behind),
a +351 9 mobile in Lisbon or the Azores (an hour behind). One zone was guessed (Madrid, Lisbon)
and a Canary callee was rung at 09:05 local. Now a call must fall inside the windows in every
candidate zone, and `next_allowed` is an instant every one of them allows. A contact's own
time zone still decides alone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import fill, make_config
from ivr.campaign.planning import plan
from ivr.compliance.calling_rules import OK, OUTSIDE_WINDOW, callee_zone, check_call
from ivr.store import Store

MADRID, CANARY = ZoneInfo("Europe/Madrid"), ZoneInfo("Atlantic/Canary")
LISBON, AZORES = ZoneInfo("Europe/Lisbon"), ZoneInfo("Atlantic/Azores")
ES_MOBILE, ES_MADRID = "+34612345678", "+34912345678"
PT_MOBILE, PT_LISBON = "+351912345678", "+351211234567"


def cfg():
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"},
                       contacts={"allow_countries": ["ES", "PT"]})


def at(hour: int, minute: int, zone: ZoneInfo, day: int = 7) -> datetime:
    """Monday 7 December 2026 (or another day), wall time in `zone`, as UTC."""
    return datetime(2026, 12, day, hour, minute, tzinfo=zone).astimezone(timezone.utc)


def verdict(number: str, now: datetime, tz: str | None = None):
    zone = callee_zone(number, tz, "Europe/Paris")
    return check_call(now, number=number, zone=zone, schedule=cfg().schedule)


def test_each_candidate_zone_must_allow_the_call() -> None:
    # 10:05 in Madrid is 09:05 in the Canaries
    v = verdict(ES_MOBILE, at(10, 5, MADRID))
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW) and "Atlantic/Canary" in v.detail
    assert v.next_allowed == at(11, 0, MADRID)
    assert verdict(ES_MOBILE, at(11, 5, MADRID)).allowed
    # 14:05 in Madrid is 13:05 in the Canaries (lunch), 20:05 is past Madrid's window
    assert verdict(ES_MOBILE, at(14, 5, MADRID)).next_allowed == at(15, 0, MADRID)
    assert verdict(ES_MOBILE, at(20, 5, MADRID)).next_allowed == at(11, 0, MADRID, day=8)
    # a Madrid landline has one zone: its whole window
    assert verdict(ES_MADRID, at(10, 5, MADRID)).allowed


def test_the_azores_and_lisbon() -> None:
    v = verdict(PT_MOBILE, at(10, 30, LISBON))  # 09:30 in the Azores
    assert not v.allowed and v.next_allowed == at(11, 0, LISBON)
    assert verdict(PT_MOBILE, at(19, 59, LISBON)).allowed  # 18:59 in the Azores
    assert verdict(PT_LISBON, at(10, 30, LISBON)).allowed


@pytest.mark.parametrize("number", ["+68987123456", "+68940920000"])
def test_a_french_polynesia_number_keeps_its_three_clocks(number: str) -> None:
    """Tahiti, the Marquesas (+30 min) and the Gambier (+1 h) share the numbers: judged on
    Tahiti's clock alone, 19:45 there was allowed while it was 20:45 in the Gambier. A
    landline too, which phonenumbers gives Tahiti's zone alone."""
    tahiti = ZoneInfo("Pacific/Tahiti")
    zone = callee_zone(number, None, "Europe/Paris")
    assert str(zone) == "Pacific/Tahiti or Pacific/Gambier or Pacific/Marquesas"
    v = check_call(at(19, 45, tahiti), number=number, zone=zone, schedule=cfg().schedule)
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW) and "Pacific/Gambier" in v.detail
    assert v.next_allowed == at(10, 0, tahiti, day=8)
    assert check_call(at(18, 45, tahiti), number=number, zone=zone,
                      schedule=cfg().schedule).allowed


@pytest.mark.parametrize("number", [ES_MOBILE, PT_MOBILE])
@pytest.mark.parametrize("hour", range(0, 24))
def test_next_allowed_is_allowed_in_every_zone_and_nothing_earlier_is(number: str, hour: int) -> None:
    now = at(hour, 17, MADRID, day=11)  # a Friday: the search crosses a weekend
    v = verdict(number, now)
    zones = (MADRID, CANARY) if number == ES_MOBILE else (LISBON, AZORES)
    if v.allowed:
        return
    nxt = v.next_allowed
    assert nxt is not None and verdict(number, nxt).reason == OK
    for z in zones:  # inside the windows in each zone's wall time
        local = nxt.astimezone(z)
        assert local.weekday() < 5 and (10 <= local.hour < 13 or 14 <= local.hour < 20)
    assert not verdict(number, nxt - timedelta(seconds=1)).allowed


def test_the_contacts_own_zone_decides_alone() -> None:
    assert verdict(ES_MOBILE, at(10, 5, MADRID), tz="Europe/Madrid").allowed
    assert not verdict(ES_MOBILE, at(10, 5, MADRID), tz="Atlantic/Canary").allowed


def test_a_number_that_may_be_anywhere_in_russia_asks_for_its_zone() -> None:
    v = verdict("+79161234567", at(12, 0, ZoneInfo("Europe/Moscow")))
    assert not v.allowed and v.next_allowed is None and "timezone column" in v.detail


def test_the_plan_judges_each_number_on_its_own_zones(store: Store) -> None:
    """11:30 in Madrid is 10:30 in Lisbon and the Canaries, 09:30 in the Azores."""
    s = fill(store, ES_MADRID, ES_MOBILE, PT_LISBON, PT_MOBILE,
             at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    p = plan(cfg(), s, at(11, 30, MADRID))
    assert sorted(c["number"] for c in p.due) == sorted([ES_MADRID, ES_MOBILE, PT_LISBON])
    assert {c["number"]: v.reason for c, v in p.waiting} == {PT_MOBILE: OUTSIDE_WINDOW}
    p = plan(cfg(), s, at(10, 30, MADRID))  # 09:30 in the Canaries and in Lisbon
    assert [c["number"] for c in p.due] == [ES_MADRID]
