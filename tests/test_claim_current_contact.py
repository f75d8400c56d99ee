"""The dial-time claim judges the contact as it is now, both backends.

A run walks one plan for as long as its due list lasts (hours): the claim must not call on the
plan's copy of the contact a slot chosen since (a consent in another campaign sharing the list)
or a time zone corrected since (the list re-imported).
"""
from __future__ import annotations

from datetime import timedelta

from conftest import contact, fill
from ivr.campaign.planning import claim, plan
from ivr.store import Store
from test_retry_next_allowed import MONDAY_10, PARIS, REAL, cfg  # one campaign, one Monday


def test_a_slot_chosen_after_the_plan_is_honoured_by_the_claim(store: Store) -> None:
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1))
    p = plan(cfg(), s, MONDAY_10)
    stale = p.due[0]  # the plan's row: no slot yet
    assert stale["number"] == REAL and stale.get("slot") is None
    # meanwhile the person consented in another campaign and asked for evening calls
    s.db.execute("UPDATE contacts SET slot = 'evening' WHERE number = ?", (REAL,))
    got = claim(cfg(), s, stale, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is None and not got.decision.allowed
    assert got.decision.next_allowed is not None
    assert got.decision.next_allowed.astimezone(PARIS).hour == 17  # the evening slot
    assert s.open_calls() == []


def test_a_time_zone_corrected_after_the_plan_is_honoured_by_the_claim(store: Store) -> None:
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1))
    stale = plan(cfg(), s, MONDAY_10).due[0]
    # the list re-imported with the callee's real zone: 10:30 Paris is 05:30 there
    s.db.execute("UPDATE contacts SET timezone = 'America/Martinique' WHERE number = ?",
                 (REAL,))
    got = claim(cfg(), s, stale, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is None and not got.decision.allowed
    assert s.open_calls() == []


def test_the_claim_still_dials_when_the_contact_has_not_changed(store: Store) -> None:
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1), slot="morning")
    stale = plan(cfg(), s, MONDAY_10).due[0]
    got = claim(cfg(), s, stale, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is not None and got.decision.allowed


def test_a_slot_dropped_after_the_plan_no_longer_holds_the_claim_back(store: Store) -> None:
    # planned (and waiting) with the evening slot; the slot since cleared: the claim at
    # 10:30 judges the row as it is now, as the plan would if read afresh
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1), slot="evening")
    row = contact(s, REAL)
    s.db.execute("UPDATE contacts SET slot = NULL WHERE number = ?", (REAL,))
    got = claim(cfg(), s, row, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is not None


def test_the_claim_hands_on_the_row_it_judged(store: Store) -> None:
    """The Originate's last calendar check (sending.py, after a long wait for its slot) reads
    the claim's row, not the plan's: the slot dropped since the plan is dropped there too."""
    s = fill(store, REAL, at=MONDAY_10 - timedelta(days=1), slot="evening")
    row = contact(s, REAL)
    s.db.execute("UPDATE contacts SET slot = NULL, timezone = 'Europe/Paris' WHERE number = ?",
                 (REAL,))
    got = claim(cfg(), s, row, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is not None and row["slot"] == "evening"
    assert got.contact is not None and got.contact["number"] == REAL
    assert (got.contact["slot"], got.contact["timezone"]) == (None, "Europe/Paris")
