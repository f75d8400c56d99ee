"""A contact erased while a run holds it in its plan (the plan may be minutes old): the claim
skips it. On SQLite the claim used to judge the plan's stale row, so the attempt's INSERT broke
the calls' foreign key in a file store (sqlite3.IntegrityError, not a store error: `ivr run`
died with calls in flight) and, without the key, dialled the erased person and wrote their
number back (store/sqlite_calls.claim_attempt; PostgreSQL's row lock finds no row)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import fill, store_at
from ivr.campaign.planning import claim, plan
from ivr.records.privacy import gdpr_erase
from ivr.store import Store
from test_retry_next_allowed import MONDAY_10, REAL, cfg


def _claim_after_erasure(s: Store) -> None:
    fill(s, REAL, at=MONDAY_10 - timedelta(days=1))
    stale = plan(cfg(), s, MONDAY_10).due[0]
    gdpr_erase(s, REAL, MONDAY_10 + timedelta(minutes=1))
    got = claim(cfg(), s, stale, "node-a", MONDAY_10 + timedelta(minutes=30))
    assert got.call is None
    assert s.places_holding(REAL) == []  # no attempt wrote the erased number back
    assert s.call_totals() == (0, 0)


def test_the_claim_skips_a_contact_erased_after_the_plan(store: Store) -> None:
    _claim_after_erasure(store)


def test_a_file_store_claim_of_an_erased_contact_does_not_raise(tmp_path: Path) -> None:
    _claim_after_erasure(store_at(tmp_path / "s.db"))
