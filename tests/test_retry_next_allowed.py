"""A contact waiting on its retry delay is next allowed at the first instant the calling rules
allow from its retry time on, not at a raw retry time after 20:00 or on a weekend: the
console's "Next allowed time", the run's last line, its progress and its wait say when the call
can really be made.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from conftest import attempt, contact, fill, make_config
from ivr import config
from ivr.campaign.planning import plan
from ivr.campaign.retry_wait import RETRY_WAIT
from ivr.campaign.why import why_nobody
from ivr.store import Store
from ivr.web.service import PlanCache

PARIS = ZoneInfo("Europe/Paris")
MONDAY_10 = datetime(2026, 12, 7, 10, 0, tzinfo=PARIS).astimezone(timezone.utc)
REAL = "+33162000010"


def cfg() -> config.Config:
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"},
                       retry={"max_attempts": 3})


def _retry_after_hours(s: Store) -> tuple[datetime, datetime]:
    """An attempt on Friday 19:45 Paris left unanswered, retried after the no-answer delay:
    after 20:00, when no call is allowed until Monday 10:00."""
    called = datetime(2026, 12, 4, 19, 45, tzinfo=PARIS).astimezone(timezone.utc)
    fill(s, REAL, at=called - timedelta(days=1))
    call = attempt(s, contact(s, REAL), "c1", "+33162000000", called)
    retry = called + timedelta(seconds=cfg().retry.delay_s.no_answer)
    assert retry.astimezone(PARIS).hour >= 20  # the premise: the raw retry time is closed
    s.finish_unanswered(int(call["id"]), "no_answer", "19", called + timedelta(seconds=40),
                        retry)
    return called, retry


def test_a_retry_after_hours_is_next_allowed_when_the_rules_allow(store: Store) -> None:
    called, _ = _retry_after_hours(store)
    p = plan(cfg(), store, called + timedelta(minutes=5))
    [(_, v)] = p.waiting
    assert v.reason == RETRY_WAIT
    assert v.next_allowed == MONDAY_10
    assert p.next_retry() == MONDAY_10  # what the run waits for and the progress shows
    assert "2026-12-07 09:00 UTC" in why_nobody(store, p, "c1")
    # the console's "Next allowed time"
    assert PlanCache().why(cfg(), store, "c1", called + timedelta(minutes=5))[1] == \
        MONDAY_10.isoformat()


def test_a_retry_inside_the_windows_is_next_allowed_at_its_own_time(store: Store) -> None:
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1))
    call = attempt(s, contact(s, REAL), "c1", "+33162000000", MONDAY_10)
    retry = MONDAY_10 + timedelta(minutes=30)
    s.finish_unanswered(int(call["id"]), "busy", "17", MONDAY_10, retry)
    [(_, v)] = plan(cfg(), s, MONDAY_10 + timedelta(minutes=1)).waiting
    assert (v.reason, v.next_allowed) == (RETRY_WAIT, retry)
