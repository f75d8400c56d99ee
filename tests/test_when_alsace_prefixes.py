"""Alsace-Moselle's two extra public holidays (Good Friday, 26 December) for every landline range
that may be there, as phonenumbers' geocoder places them: 03 90 and 03 67/68/69 are Alsace
(Strasbourg, Colmar, Mulhouse, Haguenau), and 03 54-57, 03 72 and 03 82 mix Moselle towns with
other Lorraine ones (kept safe: no call on those two days). Only 03 87/88/89 were kept before:
a Strasbourg 03 90 landline was called on Good Friday."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import geocoder

from conftest import fill, make_config
from ivr.campaign.planning import plan
from ivr.compliance.callee_place import ALSACE_MOSELLE, code_place
from ivr.compliance.calling_rules import HOLIDAY, callee_zone, check_call
from ivr.store import Store

PARIS = ZoneInfo("Europe/Paris")
GOOD_FRIDAY = datetime(2027, 3, 26, 11, 0, tzinfo=PARIS)
BOXING_DAY = datetime(2028, 12, 26, 11, 0, tzinfo=PARIS)  # a Tuesday
ORDINARY = datetime(2027, 3, 30, 11, 0, tzinfo=PARIS)  # the Tuesday after Easter Monday
ALSACE = ["+33390123456", "+33367123456", "+33368123456", "+33369123456"]
LORRAINE_MIXED = ["+33354123456", "+33355123456", "+33356123456", "+33357123456",
                  "+33372123456", "+33382123456"]
ELSEWHERE = ["+33383123456", "+33380123456", "+33612345678", "+33140123456", "+33948123456"]
# Towns of Moselle, Bas-Rhin and Haut-Rhin the geocoder names for 03 numbers.
TOWNS = {"Metz", "Thionville", "Forbach", "Sarreguemines", "Saint-Avold", "Sarrebourg",
         "Strasbourg", "Colmar", "Mulhouse", "Haguenau", "Sélestat", "Saverne", "Altkirch"}


def cfg():
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"})


@pytest.mark.parametrize("number", ALSACE + LORRAINE_MIXED)
@pytest.mark.parametrize("day", [GOOD_FRIDAY, BOXING_DAY])
def test_the_landline_is_not_called_on_alsace_moselles_holidays(number: str, day: datetime) -> None:
    conf = cfg()
    zone = callee_zone(number, None, conf.schedule.timezone)
    v = check_call(day.astimezone(timezone.utc), number=number, zone=zone, schedule=conf.schedule)
    assert (v.allowed, v.reason) == (False, HOLIDAY)
    assert code_place(number, "Europe/Paris") is None  # not decided by +33 alone


@pytest.mark.parametrize("number", ALSACE + LORRAINE_MIXED + ELSEWHERE)
def test_the_same_landlines_are_called_on_an_ordinary_day(number: str) -> None:
    conf = cfg()
    v = check_call(ORDINARY.astimezone(timezone.utc), number=number, zone=PARIS,
                   schedule=conf.schedule)
    assert v.allowed, v.detail


def test_the_plan_keeps_them_waiting_on_good_friday(store: Store) -> None:
    numbers = ALSACE + LORRAINE_MIXED + ELSEWHERE
    s = fill(store, *numbers, at=datetime(2027, 3, 1, tzinfo=timezone.utc))
    p = plan(cfg(), s, GOOD_FRIDAY.astimezone(timezone.utc))
    assert sorted(c["number"] for c in p.due) == sorted(ELSEWHERE)
    assert {c["number"]: v.reason for c, v in p.waiting} == \
        {n: HOLIDAY for n in ALSACE + LORRAINE_MIXED}


def test_every_range_the_geocoder_places_in_alsace_or_moselle_is_listed() -> None:
    """03 ab cd: where the geocoder names an Alsace or Moselle town, 03 ab keeps the holidays."""
    missing = set()
    for ab in range(10, 100):
        for cd in range(100):
            num = phonenumbers.parse(f"+333{ab:02d}{cd:02d}1234", None)
            if geocoder.description_for_number(num, "fr") in TOWNS and f"333{ab}" not in ALSACE_MOSELLE:
                missing.add(f"03 {ab}")
    assert not missing
