"""Who is due at the moment of dialling (pure rules + in-memory store; `now` passed in)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import attempt, contact, make_config
from conftest import fill
from ivr import config
from ivr.campaign.planning import claim, plan, verdict_for
from ivr.campaign.why import why_nobody
from ivr.store import CallResult, Store, sqlite_history

# Tuesday 2026-12-01 11:00 Europe/Paris (10:00 UTC): inside the default window.
OPEN = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
REAL = "+33162000010"   # a real-range number: the compliant schedule applies in full
FICTION = "+33199000010"


def cfg(**schedule: object) -> config.Config:
    return make_config(campaign={"name": "c1", "caller_id": "+33162000000"},
                       retry={"max_attempts": 3}, schedule=schedule)


def store_with(store: Store, *numbers: str, slot: str | None = None) -> Store:
    return fill(store, *numbers, at=OPEN, slot=slot)


def test_due_inside_the_window(store: Store) -> None:
    s = store_with(store, REAL)
    assert [c["number"] for c in plan(cfg(), s, OPEN).due] == [REAL]


def test_outside_calling_hours_nobody_is_due_and_the_run_says_why(store: Store) -> None:
    s = store_with(store, REAL)
    evening = OPEN.replace(hour=19, minute=30)  # 20:30 Paris
    p = plan(cfg(), s, evening)
    assert p.due == [] and p.waiting[0][1].reason == "outside_window"
    assert "outside window" in why_nobody(s, p)


def test_demo_any_hour_only_for_fiction_numbers(store: Store) -> None:
    s = store_with(store, REAL, FICTION)
    night = OPEN.replace(hour=2)
    due = [c["number"] for c in plan(cfg(demo_any_hour=True), s, night).due]
    assert due == [FICTION]


def test_opted_out_is_checked_at_dial_time_and_status_follows(store: Store) -> None:
    s = store_with(store, REAL)
    s.add_optout(REAL, "email", OPEN)
    assert contact(s, REAL)["status"] == "opted_out"
    s.db.execute("UPDATE contacts SET status = 'pending'")  # stale status: the hash decides
    p = plan(cfg(), s, OPEN)
    assert p.due == [] and p.waiting[0][1].reason == "opted_out"
    assert contact(s, REAL)["status"] == "pending"  # the plan writes nothing
    got = claim(cfg(), s, contact(s, REAL), "node-a", OPEN)  # the dial path does
    assert got.call is None and got.decision.reason == "opted_out"
    assert contact(s, REAL)["status"] == "opted_out" and s.open_calls() == []


def test_retry_wait_then_due(store: Store) -> None:
    s = store_with(store, REAL)
    call = attempt(s, contact(s, REAL), "c1", "+33162000000", OPEN)
    s.finish_unanswered(call["id"], "busy", "17", OPEN, OPEN + timedelta(minutes=30))
    v = verdict_for(cfg(), s, contact(s, REAL), OPEN + timedelta(minutes=29))
    assert (v.allowed, v.reason) == (False, "retry_wait")
    assert verdict_for(cfg(), s, contact(s, REAL), OPEN + timedelta(minutes=30)).allowed


def test_attempt_in_flight_is_not_dialled_again(store: Store) -> None:
    s = store_with(store, REAL)
    attempt(s, contact(s, REAL), "c1", "+33162000000", OPEN)
    assert verdict_for(cfg(), s, contact(s, REAL), OPEN).reason == "in_flight"


def test_refusal_cooldown_uses_the_stored_refusal(store: Store) -> None:
    s = store_with(store, REAL)
    call = attempt(s, contact(s, REAL), "c1", "+33162000000", OPEN)
    s.finish_answered(call["id"], CallResult(outcome="declined", stage="goodbye", keys="2",
                                             heard={}, choice="refusal", choice_key="2"), OPEN)
    s.db.execute("UPDATE contacts SET status = 'pending'")  # a later campaign, same person
    later = OPEN + timedelta(days=7)
    assert verdict_for(cfg(), s, contact(s, REAL), later).reason == "refusal_cooldown"


def test_cap_counts_attempts_of_every_campaign(store: Store) -> None:
    s = store_with(store, REAL)
    for i in range(4):
        call = attempt(s, contact(s, REAL), f"other-{i}", "+33162000000",
                                OPEN - timedelta(days=i + 1))
        s.finish_unanswered(call["id"], "no_answer", "19", OPEN, None)
    s.db.execute("UPDATE contacts SET status = 'pending'")
    assert verdict_for(cfg(), s, contact(s, REAL), OPEN).reason == "attempt_cap"


@pytest.mark.parametrize("slot,allowed", [("morning", True), ("evening", False)])
def test_preferred_slot_from_a_consent_is_honoured(store: Store, slot: str, allowed: bool) -> None:
    s = store_with(store, REAL, slot=slot)
    assert verdict_for(cfg(), s, contact(s, REAL), OPEN).allowed is allowed


def test_slot_given_in_a_call_is_stored_on_the_contact(store: Store) -> None:
    s = store_with(store, REAL)
    call = attempt(s, contact(s, REAL), "c1", "+33162000000", OPEN)
    s.finish_answered(call["id"], CallResult(outcome="message_played", stage="goodbye",
                                             keys="13", heard={}, choice="consent",
                                             choice_key="1", slot="evening"), OPEN)
    assert contact(s, REAL)["slot"] == "evening"
    assert s.one("SELECT slot FROM consents")["slot"] == "evening"


def test_plan_reads_history_in_bulk_and_agrees_with_the_per_contact_rules(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's bulk history (chunks of 500 numbers here) gives each contact the verdict the
    per-contact queries give: refusal cooldown, attempt cap (only the last 30 days count),
    opposition, and plain due."""
    monkeypatch.setattr(sqlite_history, "HISTORY_CHUNK", 500)
    numbers = [f"+331620{i:05d}" for i in range(1203)]  # three chunks
    s = store_with(store, *numbers)
    refused, capped, old_calls, opposed = numbers[0], numbers[600], numbers[1100], numbers[1202]
    call = attempt(s, contact(s, refused), "other", "+33162000000", OPEN - timedelta(days=3))
    s.finish_answered(call["id"], CallResult(outcome="declined", stage="goodbye", keys="2",
                                             heard={}, choice="refusal", choice_key="2"),
                      OPEN - timedelta(days=3))
    for i in range(4):
        for number, age in ((capped, i + 1), (old_calls, 31 + i)):
            call = attempt(s, contact(s, number), f"other-{i}", "+33162000000",
                                    OPEN - timedelta(days=age))
            s.finish_unanswered(call["id"], "no_answer", "19", OPEN, None)
    s.add_optout(opposed, "letter", OPEN)
    s.db.execute("UPDATE contacts SET status = 'pending'")  # as if opposed after the import
    p = plan(cfg(), s, OPEN)
    by_number = {c["number"]: v.reason for c, v in p.waiting}
    assert by_number == {refused: "refusal_cooldown", capped: "attempt_cap",
                         opposed: "opted_out"}
    assert contact(s, opposed)["status"] == "pending"  # the plan writes nothing
    assert claim(cfg(), s, contact(s, opposed), "node-a", OPEN).call is None
    assert contact(s, opposed)["status"] == "opted_out"
    assert len(p.due) == 1200 and old_calls in {c["number"] for c in p.due}
    for c in p.due[:5] + [contact(s, old_calls)]:
        assert verdict_for(cfg(), s, c, OPEN).allowed
        assert verdict_for(cfg(), s, c, OPEN, p.history[c["number"]]).allowed
    assert verdict_for(cfg(), s, contact(s, capped), OPEN).reason == "attempt_cap"


def test_claim_applies_the_same_judge_and_records_the_node(store: Store) -> None:
    s = store_with(store, REAL)
    evening = OPEN.replace(hour=19, minute=30)  # 20:30 Paris
    late = claim(cfg(), s, contact(s, REAL), "node-a", evening)
    assert late.call is None and late.decision.reason == "outside_window"
    assert s.open_calls() == [] and contact(s, REAL)["status"] == "pending"
    got = claim(cfg(), s, contact(s, REAL), "node-a", OPEN)
    assert got.decision.allowed and got.call is not None and got.call["node"] == "node-a"
    assert got.call["campaign"] == "c1" and got.call["caller_id"] == "+33162000000"
    again = claim(cfg(), s, contact(s, REAL), "node-b", OPEN)
    assert again.call is None and again.decision.reason == "in_flight"
    assert [c["id"] for c in s.open_calls("node-a")] == [got.call["id"]]
    assert s.open_calls("node-b") == []
