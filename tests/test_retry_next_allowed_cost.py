"""A plan does not search the calling rules for every contact waiting on its retry delay: the
next allowed time of one (the first instant the rules allow from its retry time on) is found
when read, and the soonest of them (the run's wait and progress, the why-nobody line, the
console's "Next allowed time") is found searching few of them. Before, each plan searched
every such contact's (~100 us each: 100,000 of them planned in ~15 s, not ~2 s).
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import attempt, contact, fill, make_config
from ivr import config
from ivr.campaign import planning
from ivr.campaign.planning import Plan, judge, plan
from ivr.campaign.retry_wait import RETRY_WAIT
from ivr.campaign.why import why_nobody
from ivr.store import Store
from ivr.store.base import History
from ivr.web.service import PlanCache

PARIS = ZoneInfo("Europe/Paris")
FRIDAY_19_45 = datetime(2026, 12, 4, 19, 45, tzinfo=PARIS).astimezone(timezone.utc)
MONDAY_10 = datetime(2026, 12, 7, 10, 0, tzinfo=PARIS).astimezone(timezone.utc)
N = 40


def cfg(**schedule: Any) -> config.Config:
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"},
                       retry={"max_attempts": 3}, schedule=schedule)


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The instants the judge searches the calling rules at, in order."""
    seen: list[datetime] = []
    real = planning.check_call

    def counted(at: datetime, **kw: Any) -> Any:
        seen.append(at)
        return real(at, **kw)
    monkeypatch.setattr(planning, "check_call", counted)
    return seen


def _after_hours(s: Store) -> None:
    """N contacts called on Friday 19:45 Paris, unanswered, each retried after 20:00 (one a
    minute from 20:10): no call is allowed then until Monday 10:00."""
    for i in range(N):
        number = f"+336120001{i:02d}"
        fill(s, number, at=FRIDAY_19_45 - timedelta(days=1))
        call = attempt(s, contact(s, number), "c1", "+33162000000", FRIDAY_19_45)
        s.finish_unanswered(int(call["id"]), "no_answer", "19", FRIDAY_19_45,
                            FRIDAY_19_45 + timedelta(minutes=25 + i))


def test_a_plan_searches_the_soonest_retries_only(store: Store,
                                                  searches: list[datetime]) -> None:
    _after_hours(store)
    now = FRIDAY_19_45 + timedelta(minutes=5)
    p = plan(cfg(), store, now)
    assert [v.reason for _, v in p.waiting] == [RETRY_WAIT] * N
    assert searches == []  # none at plan time (was N: one per contact)
    assert p.next_retry() == MONDAY_10  # the run's wait and progress
    assert "next allowed 2026-12-07 09:00 UTC" in why_nobody(store, p, "c1")
    assert len(searches) <= 2, len(searches)  # the soonest retry's, not N
    searches.clear()
    # the console plans afresh: its "Next allowed time" costs as few
    assert PlanCache().why(cfg(), store, "c1", now)[1] == MONDAY_10.isoformat()
    assert len(searches) <= 2, len(searches)
    # each contact's own next allowed time, read one by one, is still the rules'
    assert {v.next_allowed for _, v in p.waiting} == {MONDAY_10}


# -- the soonest is the soonest: against each contact's own, over mixed contacts -------------
NUMBERS = ["+33612000101", "+33612000102", "+262692000101", "+590690000101", "+33387000101",
           "+33199000101", "+12125550101", "+33162000101"]
START = datetime(2026, 12, 18, 18, 0, tzinfo=timezone.utc)  # a Friday: Christmas a week on


def _mixed(rng: random.Random, n: int, cap: int) -> Iterator[tuple[dict[str, Any], History]]:
    """Contacts in several places and slots, some at their attempt cap or in a refusal's
    cooldown, retried at times spread over the weekend or ten days (Christmas)."""
    days = rng.choice([2, 10])
    for i in range(n):
        row = {"number": rng.choice(NUMBERS), "slot": rng.choice([None, None, "morning",
                                                                  "evening"]),
               "timezone": rng.choice([None, None, None, "America/Guadeloupe", "Asia/Tokyo"])}
        retry = START + timedelta(minutes=rng.randrange(0, days * 24 * 60, 7))
        attempts = [retry - timedelta(days=rng.randrange(0, 29), hours=1)
                    for _ in range(cap if rng.random() < 0.2 else 1)]
        refusal = retry - timedelta(days=rng.randrange(1, 90)) if rng.random() < 0.2 else None
        yield row, History(attempts=attempts, last_refusal=refusal, retry_at=retry)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("schedule", [{}, {"blackout_dates": ["2026-12-21", "2026-12-22"]},
                                      {"demo_any_hour": True}])
def test_the_soonest_retry_is_the_least_of_their_next_allowed_times(
        seed: int, schedule: dict[str, Any]) -> None:
    rng, c = random.Random(seed), cfg(**schedule)
    cap = c.schedule.max_attempts_per_30_days
    now = START - timedelta(hours=1)
    rows = list(_mixed(rng, rng.choice([1, 5, 60, 300]), cap))
    p = Plan(waiting=[(row, judge(c, row, now)(past)) for row, past in rows])
    # the same verdicts afresh, each searched on its own
    each = [judge(c, row, now)(past).next_allowed for row, past in rows]
    assert p.next_retry() == min(each)
    assert p.next_allowed() == min(each)
    assert p.soonest_retry() is not None and p.soonest_retry().reason == RETRY_WAIT
    assert [v.next_allowed for _, v in p.waiting] == each


FRIDAY_20_30 = datetime(2026, 12, 4, 20, 30, tzinfo=PARIS).astimezone(timezone.utc)
MAUNDY_THURSDAY_20_30 = datetime(2027, 3, 25, 20, 30, tzinfo=PARIS).astimezone(timezone.utc)
MOBILE, ALSACE, FICTION = "+33612000101", "+33387000101", "+33199000101"


@pytest.mark.parametrize("first,then,at,schedule", [
    # one waits for Monday 17:00 (its evening slot), the other for Monday 10:00
    ({"number": MOBILE, "slot": "evening"}, {"number": MOBILE}, FRIDAY_20_30, {}),
    ({"number": MOBILE}, {"number": MOBILE, "timezone": "Asia/Tokyo"}, FRIDAY_20_30, {}),
    ({"number": MOBILE}, {"number": FICTION}, FRIDAY_20_30, {"demo_any_hour": True}),
    # Good Friday is a holiday in Alsace-Moselle only
    ({"number": ALSACE}, {"number": MOBILE}, MAUNDY_THURSDAY_20_30, {}),
])
def test_a_retry_in_another_calendar_is_not_bounded_by_a_neighbours_closing(
        first: dict[str, Any], then: dict[str, Any], at: datetime,
        schedule: dict[str, Any]) -> None:
    """The first retry's search finds its calendar closed until T; the next one, due before
    T but in another calendar (slot, zone, holidays, fiction bypass), opens sooner."""
    c = cfg(**schedule)
    rows = [({"timezone": None, "slot": None, **first}, History(retry_at=at)),
            ({"timezone": None, "slot": None, **then},
             History(retry_at=at + timedelta(minutes=10)))]
    p = Plan(waiting=[(row, judge(c, row, at - timedelta(hours=1))(past)) for row, past in rows])
    each = [v.next_allowed for _, v in Plan(waiting=[
        (row, judge(c, row, at - timedelta(hours=1))(past)) for row, past in rows]).waiting]
    assert each[1] < each[0]  # the premise: the second opens sooner
    assert p.next_retry() == each[1]


def test_a_retry_whose_rules_find_no_time_is_next_allowed_at_its_retry_time() -> None:
    """Blackout dates over more than the rules' search horizon: a contact whose refusal
    cooldown ends in them has no allowed time found, and is next allowed at its retry time
    (as a single one is), even when its retry falls where a neighbour's calendar is closed."""
    start = datetime(2026, 12, 14).date()
    c = cfg(blackout_dates=[str(start + timedelta(days=d)) for d in range(425)])
    now = FRIDAY_20_30 - timedelta(hours=1)
    row = {"number": MOBILE, "timezone": None, "slot": None}
    clear = History(retry_at=FRIDAY_20_30)
    refused = History(retry_at=FRIDAY_20_30 + timedelta(minutes=10),
                      last_refusal=FRIDAY_20_30 - timedelta(days=40))
    assert judge(c, row, now)(clear).next_allowed == MONDAY_10  # the premises
    assert judge(c, row, now)(refused).next_allowed == refused.retry_at
    p = Plan(waiting=[(row, judge(c, row, now)(clear)), (row, judge(c, row, now)(refused))])
    assert p.next_retry() == refused.retry_at
