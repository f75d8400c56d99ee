"""Overseas VoIP ("box") numbers in 09 are judged on their region's time and holidays.

ARCEP numbers an overseas box in 09 (09 39x, 09 47x, 09 76x; phonenumbers' metadata says which
region each block is in). Written 09 47 50 12 34, a Guadeloupe box became +33 9 47 50 12 34, was
judged on Paris time and was rung at 05:05 in Pointe-à-Pitre. It keeps its +33 form (stored
numbers and oppositions have always had it), whichever form it is written in (+590 9… too),
and is judged in its region. Every other 09 number stays mainland."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import phonenumbers
import pytest

from conftest import fill, make_config
from ivr.campaign.planning import plan
from ivr.compliance.callee_place import code_place, zones_of
from ivr.compliance.calling_rules import (
    HOLIDAY, OUTSIDE_WINDOW, callee_zone, check_call, fr_subdivisions)
from ivr.compliance.preflight import check_caller_id
from ivr.numbers import e164, national_form, parse_callee
from ivr.store import Store

PARIS = ZoneInfo("Europe/Paris")
MONDAY_1005_PARIS = datetime(2026, 12, 7, 10, 5, tzinfo=PARIS).astimezone(timezone.utc)
# (national form, its region's E.164 per phonenumbers' metadata, region, zone)
BOXES = [
    ("09 47 50 12 34", "+590947501234", "GP", "America/Guadeloupe"),
    ("09 76 01 23 45", "+590976012345", "GP", "America/Guadeloupe"),
    ("09 47 60 12 34", "+594947601234", "GF", "America/Cayenne"),
    ("09 47 70 12 34", "+596947701234", "MQ", "America/Martinique"),
    ("09 47 90 12 34", "+262947901234", "RE", "Indian/Reunion"),
    ("09 47 80 12 34", "+262947801234", "YT", "Indian/Mayotte"),
]
MAINLAND = ["09 48 12 34 56", "09 70 12 34 56", "09 47 01 23 45", "09 39 01 23 45",
            "09 12 34 56 78", "09 51 23 45 67"]


def cfg(**sections: object):
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"}, **sections)


@pytest.mark.parametrize(("national", "expected", "region", "zone"), BOXES)
def test_an_overseas_box_keeps_its_plus_33_form_and_its_regions_zone(
        national: str, expected: str, region: str, zone: str) -> None:
    """Stored as before (an opposition recorded as +33 9… must still match it), judged in its
    region; its +590 9… form (the region's code) is judged the same."""
    assert phonenumbers.is_valid_number_for_region(phonenumbers.parse(expected), region)
    plus33 = "+33 " + national[1:]
    kept = "+33" + national.replace(" ", "")[1:]
    assert parse_callee(national, "FR") == kept == parse_callee(plus33, "FR")
    assert e164(national, "FR") == kept == e164(plus33, "FR")
    # One line, one E.164: its +590 9… form is the same box, so it is given the +33 form too
    # (it was kept apart, and an opposition given in one form missed the contact in the other).
    assert e164(expected, "FR") == kept == parse_callee(expected, "FR")
    assert national_form(expected) == national.replace(" ", "") == national_form(kept)
    # its region's zone first (09 76 01..: also French Guiana's, per the metadata's 09 76x)
    assert zones_of(callee_zone(kept, None, "Europe/Paris"))[0] == ZoneInfo(zone)
    assert zones_of(callee_zone(expected, None, "Europe/Paris"))[0] == ZoneInfo(zone)


@pytest.mark.parametrize(("national", "expected", "region", "zone"), BOXES)
def test_an_overseas_box_is_not_rung_at_dawn(
        national: str, expected: str, region: str, zone: str) -> None:
    conf = cfg()
    number = parse_callee(national, "FR")
    v = check_call(MONDAY_1005_PARIS, number=number, schedule=conf.schedule,
                   zone=callee_zone(number, None, conf.schedule.timezone))
    local = MONDAY_1005_PARIS.astimezone(ZoneInfo(zone))
    assert v.allowed == (10 <= local.hour < 13 or 14 <= local.hour < 20), (v.detail, local)
    if local.hour < 10:
        assert v.reason == OUTSIDE_WINDOW and v.next_allowed is not None
        assert v.next_allowed.astimezone(ZoneInfo(zone)).hour == 10


@pytest.mark.parametrize("national", MAINLAND)
def test_a_mainland_09_number_stays_in_paris(national: str) -> None:
    number = parse_callee(national, "FR")
    assert number == "+33" + national.replace(" ", "")[1:]
    assert callee_zone(number, None, "Europe/Paris") == PARIS
    assert fr_subdivisions(number) == ()
    assert check_call(MONDAY_1005_PARIS, number=number, zone=PARIS,
                      schedule=cfg().schedule).allowed


def test_a_guadeloupe_box_keeps_guadeloupes_abolition_day() -> None:
    number = parse_callee("09 47 50 12 34", "FR")
    day = datetime(2027, 5, 27, 11, 0, tzinfo=ZoneInfo("America/Guadeloupe"))
    v = check_call(day.astimezone(timezone.utc), number=number, schedule=cfg().schedule,
                   zone=callee_zone(number, None, "Europe/Paris"))
    assert (v.allowed, v.reason) == (False, HOLIDAY)


def test_a_row_stored_in_the_plus_33_form_is_judged_in_its_region() -> None:
    """The row holds +33 9 47 50 12 34: the zone and holidays of +590 9 47 50 12 34."""
    old, new = "+33947501234", "+590947501234"
    assert callee_zone(old, None, "Europe/Paris") == callee_zone(new, None, "Europe/Paris")
    assert fr_subdivisions(old) == fr_subdivisions(new) and "971" in fr_subdivisions(old)
    assert code_place(old, "Europe/Paris") is None  # the plan may not decide it by +33


def test_the_plan_keeps_boxes_waiting_at_dawn_and_calls_the_mainland(store: Store) -> None:
    boxes = ["+33947501234", "+590947501234", "+596947701234", "+33976012345"]
    mainland = ["+33947012345", "+33948123456", "+33970123456"]
    # a mainland number of the same +33 9 47 head first: its verdict must not be reused
    s = fill(store, *mainland, *boxes, at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    p = plan(cfg(), s, MONDAY_1005_PARIS)
    assert sorted(c["number"] for c in p.due) == sorted(mainland)
    assert {c["number"]: v.reason for c, v in p.waiting} == {n: OUTSIDE_WINDOW for n in boxes}


def test_an_overseas_box_caller_id_is_still_an_automated_calls_number() -> None:
    conf = cfg()
    conf_box = make_config(campaign={"name": "c1", "caller_id": "09 47 50 12 34"})
    assert conf_box.campaign.caller_id == "+33947501234"  # presented as it always was
    assert check_caller_id(conf_box.campaign.caller_id) == []
    assert conf.campaign.caller_id == "+33162000000"


# -- where the metadata gives one 09 block to two regions, each region's time and holidays ------
def test_a_box_two_regions_claim_is_judged_in_both() -> None:
    """09 76 22..: Réunion's VoIP block and, per the metadata, French Guiana's (09 76x): it
    was judged in Réunion alone. 17:30 in Réunion is 10:30 in Cayenne: both allow it; 11:00 in
    Réunion is 04:00 in Cayenne."""
    number = parse_callee("09 76 22 12 34", "FR")
    zone = callee_zone(number, None, "Europe/Paris")
    reunion, cayenne = ZoneInfo("Indian/Reunion"), ZoneInfo("America/Cayenne")
    assert str(zone) == "Indian/Reunion or America/Cayenne"
    assert set(fr_subdivisions(number)) == {"973", "974"}
    sch = cfg().schedule
    early = datetime(2026, 12, 7, 11, 0, tzinfo=reunion).astimezone(timezone.utc)
    v = check_call(early, number=number, zone=zone, schedule=sch)
    assert (v.allowed, v.reason) == (False, OUTSIDE_WINDOW)
    assert v.next_allowed == datetime(2026, 12, 7, 10, 0, tzinfo=cayenne)
    later = datetime(2026, 12, 7, 17, 30, tzinfo=reunion).astimezone(timezone.utc)
    assert check_call(later, number=number, zone=zone, schedule=sch).allowed


def test_a_box_guadeloupe_and_martinique_claim_keeps_both_abolition_days() -> None:
    """09 39 70..: Martinique's block, and Guadeloupe's per its 09 39 5-7 pattern. 22 May 2026
    (a Friday) is Martinique's abolition day."""
    number = parse_callee("09 39 70 12 34", "FR")
    zone = callee_zone(number, None, "Europe/Paris")
    day = datetime(2026, 5, 22, 11, 0, tzinfo=ZoneInfo("America/Martinique"))
    v = check_call(day.astimezone(timezone.utc), number=number, zone=zone, schedule=cfg().schedule)
    assert (v.allowed, v.reason) == (False, HOLIDAY)


@pytest.mark.parametrize(("number", "default", "zone"), [
    ("+262692123456", "Indian/Mayotte", "Indian/Reunion"),   # a Réunion mobile
    ("+262639012345", "Indian/Reunion", "Indian/Mayotte")])  # a Mayotte mobile
def test_an_overseas_mobile_is_judged_in_its_own_region_whatever_the_default(
        number: str, default: str, zone: str) -> None:
    assert callee_zone(number, None, default) == ZoneInfo(zone)
