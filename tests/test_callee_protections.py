"""Protections of the callee that a review found open (2026-12-02), each shown on the plan and the
claim as `ivr run` uses them, with an explicit `now`:

- a fiction caller ID (the demo's +33 1 99 00 ..) judged at every claim, not only by the preflight
  at start: a real list uploaded in the console mid-run, or before Start on a standby run, was
  called from it;
- the public holidays of Alsace-Moselle's landlines (Good Friday, 26 December), and of every
  overseas region an ambiguous +590 number may be in (Saint-Martin's abolition day);
- the caller ID presented as the E.164 number the preflight checked, not as written;
- a retention shorter than what the calling rules read back, refused: a purge deleted a recent
  refusal, and the refuser was called again.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import add_contact, contact, fill, make_config, store_with
from ivr.campaign.planning import CALLER_ID_FICTION, claim, plan
from ivr.compliance.preflight import check_caller_id
from ivr.errors import ConfigError, IvrError
from ivr.records.privacy import purge
from ivr.store import CallResult, Store

TUE = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)  # Tuesday, 11:00 in Paris
FICTION = "+33199000010"
REAL = "+33612345678"


def cfg(caller_id: str = "+33162000000", **sections: object):
    return make_config(campaign={"name": "c1", "caller_id": caller_id},
                       contacts={"allow_countries": ["GP", "BL", "MF"]}, **sections)


def waiting(p) -> dict[str, str]:
    return {c["number"]: v.reason for c, v in p.waiting}


# -- a fiction caller ID calls fiction numbers only, at every claim ------------------------------
def test_a_real_number_added_after_the_preflight_is_not_called_from_a_fiction_caller_id(
        store: Store) -> None:
    s = fill(store, FICTION, at=TUE)
    conf = cfg("+33199000000")
    assert check_caller_id(conf.campaign.caller_id, callees=[FICTION]) == []  # the run starts
    add_contact(s, REAL, at=TUE)  # then a list is uploaded in the console
    p = plan(conf, s, TUE)
    assert [c["number"] for c in p.due] == [FICTION]
    assert waiting(p) == {REAL: CALLER_ID_FICTION}
    assert claim(conf, s, contact(s, REAL), "pbx", TUE).call is None
    assert claim(conf, s, contact(s, FICTION), "pbx", TUE).call is not None


def test_a_real_caller_id_still_calls_real_numbers() -> None:
    s = store_with(REAL, FICTION, at=TUE)
    assert sorted(c["number"] for c in plan(cfg(), s, TUE).due) == sorted([REAL, FICTION])


def test_demo_any_hour_with_a_fiction_caller_id_keeps_real_numbers_out() -> None:
    sch = {"override_reason": "demo", "demo_any_hour": True}
    s = store_with(REAL, FICTION, at=TUE)
    p = plan(cfg("+33199000000", schedule=sch), s, TUE.replace(hour=23))
    assert [c["number"] for c in p.due] == [FICTION]
    assert waiting(p) == {REAL: CALLER_ID_FICTION}


# -- local public holidays -----------------------------------------------------------------------
ALSACE_MOSELLE = ["+33388123456", "+33389123456", "+33387123456", "+33390123456"]
ELSEWHERE = ["+33383123456", "+33612345678", "+33140123456", "+33380123456"]


@pytest.mark.parametrize("day", [datetime(2027, 3, 26, 10, 0, tzinfo=timezone.utc),   # Good Friday
                                 datetime(2028, 12, 26, 10, 0, tzinfo=timezone.utc)])  # 26 Dec, Tue
def test_alsace_moselle_landlines_keep_their_two_extra_holidays(day: datetime) -> None:
    s = store_with(*ALSACE_MOSELLE, *ELSEWHERE, at=day - timedelta(days=10))
    p = plan(cfg(), s, day)
    assert sorted(c["number"] for c in p.due) == sorted(ELSEWHERE)
    assert waiting(p) == {n: "holiday" for n in ALSACE_MOSELLE}


def test_the_same_landlines_are_called_on_an_ordinary_day() -> None:
    s = store_with(*ALSACE_MOSELLE, at=TUE)
    assert len(plan(cfg(), s, TUE).due) == len(ALSACE_MOSELLE)


def test_a_number_valid_in_several_islands_keeps_each_islands_holidays() -> None:
    """A 0690 mobile is valid in Guadeloupe, Saint-Barthélemy and Saint-Martin, a 0590 87
    landline in Saint-Barthélemy and Saint-Martin only. 28 May is Saint-Martin's abolition day,
    27 May Guadeloupe's: phonenumbers alone placed the mobile in Guadeloupe and the landline in
    Saint-Barthélemy, and both were called on 28 May."""
    mobile, landline = "+590690771234", "+590590871234"

    def due_on(day: datetime) -> list[str]:  # 11:00 in Marigot and Pointe-à-Pitre
        return sorted(c["number"] for c in plan(cfg(), store_with(mobile, landline, at=TUE),
                                                day.replace(hour=15)).due)
    assert due_on(datetime(2027, 5, 28, tzinfo=timezone.utc)) == []
    assert due_on(datetime(2027, 5, 27, tzinfo=timezone.utc)) == [landline]
    assert due_on(datetime(2027, 6, 2, tzinfo=timezone.utc)) == [landline, mobile]


# -- the caller ID presented is the one checked --------------------------------------------------
@pytest.mark.parametrize("written", ["+33 (0)1 62 00 00 00", "tel:+33162000000", "01 62 00 00 00",
                                     "+33 1 62 00 00 00 ext 5", "+33162000000\u200b"])
def test_the_caller_id_is_presented_in_e164(written: str) -> None:
    conf = cfg(written)
    assert conf.campaign.caller_id == "+33162000000"
    assert check_caller_id(conf.campaign.caller_id) == []


def test_an_unreadable_caller_id_is_left_for_the_preflight_to_refuse() -> None:
    assert [v.code for v in check_caller_id(cfg("anonymous").campaign.caller_id)] == \
        ["caller_id_masked"]


# -- retention never deletes what the rules still read -------------------------------------------
@pytest.mark.parametrize("days", [1, 7, 59])
def test_a_retention_shorter_than_the_refusal_cooldown_is_refused(days: int) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(retention={"days": days})
    assert str(err.value).startswith(f"retention.days is {days}:") and "at least 60" in str(err.value)
    cfg(retention={"days": 60})
    cfg(retention={"days": 30}, schedule={"refusal_cooldown_days": 30})


def test_a_purge_shorter_than_the_cooldown_is_refused_and_deletes_nothing() -> None:
    s = store_with(REAL, at=TUE)
    conf = cfg()
    call = claim(conf, s, contact(s, REAL), "pbx", TUE).call
    assert call is not None
    s.finish_answered(call["id"], CallResult(outcome="declined", stage="ask", keys="2", heard={},
                                             choice="refusal", choice_key="2"), TUE)
    later = TUE + timedelta(days=7)
    with pytest.raises(IvrError, match="at least 60d"):
        purge(s, timedelta(days=3), later, keep=timedelta(days=60))
    assert s.one("SELECT COUNT(*) AS n FROM consents")["n"] == 1
    assert plan(conf, s, later).due == []  # the refusal still holds
