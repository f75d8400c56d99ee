"""The plan (`ivr run --dry-run`, the console's due list) sees an erasure's hold as the claim
does: a re-imported refuser waits for the cooldown's end instead of showing due (before: its
`plan_quiet` row, with no calls nor consents of its own, was judged as never called). Both
backends."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ivr.campaign.planning import plan
from ivr.records.privacy import gdpr_erase
from ivr.store import Store
from test_erasure_holds import REAL, REFUSED, cfg, imported, refused


def test_the_plan_keeps_a_re_imported_refuser_waiting(store: Store, tmp_path: Path) -> None:
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    imported(store, tmp_path, REFUSED + timedelta(days=2), "list-2")
    p = plan(cfg(), store, REFUSED + timedelta(days=3))
    assert p.due == [] and [(c["number"], v.reason) for c, v in p.waiting] == [
        (REAL, "refusal_cooldown")]
    later = plan(cfg(), store, REFUSED + timedelta(days=60, minutes=1))
    assert [c["number"] for c in later.due] == [REAL]


def test_a_store_without_a_live_hold_hashes_no_number_for_the_plan(
        store: Store, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The plan at scale reads every pending contact: held_among must not key-hash each of
    them when no erasure left a live hold (nearly every store)."""
    refused(store, tmp_path)
    hashed: list[str] = []
    real = store.number_hash
    monkeypatch.setattr(store, "number_hash", lambda n: hashed.append(n) or real(n))
    numbers = [f"+3316200{i:04d}" for i in range(50)]
    assert store.held_among(numbers, REFUSED + timedelta(days=3)) == set()
    assert hashed == []
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))  # a live hold now: the look-up hashes
    assert store.held_among([REAL, *numbers], REFUSED + timedelta(days=3)) == {REAL}
    assert REAL in hashed
