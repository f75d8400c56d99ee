"""The time slot a person chose lands on their consent's proof row, not on the opposition
they made after it (9 during the goodbye): the consent row is stored as soon as the message
and legal mentions were heard (record_choice), the slot is asked after."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import attempt, contact, fill
from ivr.store import CallResult, Store

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
NUMBER = "+33162000010"


def test_a_slot_chosen_then_an_opposition_keeps_the_slot_on_the_consent(store: Store) -> None:
    s = fill(store, NUMBER, at=NOW)
    call = attempt(s, contact(s, NUMBER), "c1", "+33162000000", NOW)
    heard = {"message": "m" * 64, "legal": "l" * 64}
    consent = CallResult(outcome="message_played", stage="legal", keys="1", heard=heard,
                         choice="consent", choice_key="1")
    assert s.record_choice(call["id"], consent, NOW + timedelta(seconds=40))
    s.finish_answered(call["id"], CallResult(
        outcome="opted_out", stage="goodbye", keys="139", heard=heard, choice="optout",
        choice_key="9", slot="evening"), NOW + timedelta(seconds=60))
    rows = s.q("SELECT kind, slot FROM consents WHERE call_id = ? ORDER BY id", (call["id"],))
    assert [(r["kind"], r["slot"]) for r in rows] == [("consent", "evening"), ("optout", None)]


def test_a_slot_with_a_plain_consent_stays_on_it(store: Store) -> None:
    s = fill(store, NUMBER, at=NOW)
    call = attempt(s, contact(s, NUMBER), "c1", "+33162000000", NOW)
    s.finish_answered(call["id"], CallResult(
        outcome="message_played", stage="goodbye", keys="13", heard={}, choice="consent",
        choice_key="1", slot="evening"), NOW)
    rows = s.q("SELECT kind, slot FROM consents WHERE call_id = ?", (call["id"],))
    assert [(r["kind"], r["slot"]) for r in rows] == [("consent", "evening")]
