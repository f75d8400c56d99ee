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


def test_a_held_number_with_new_calls_is_judged_with_its_hold(store: Store,
                                                              tmp_path: Path) -> None:
    """Found in review: a number with calls since its erasure is not quiet, and PostgreSQL's
    plan reads its history in the plan's own statement, with no hold: three attempts kept by
    the hold plus one since made the cap (4 in 30 days), yet the plan said due and every
    claim refused it (attempt_cap): a run re-planning at each pacing slot, never done."""
    from conftest import attempt
    from ivr.campaign.planning import claim
    row = imported(store, tmp_path, REFUSED - timedelta(days=1))
    for day in range(3):
        call = attempt(store, row, f"other-{day}", "+33162000000", REFUSED + timedelta(days=day))
        store.finish_unanswered(call["id"], "no_answer", "19",
                                REFUSED + timedelta(days=day, seconds=40), None)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=3))
    row = imported(store, tmp_path, REFUSED + timedelta(days=4), "list-2")
    at = REFUSED + timedelta(days=4)
    call = claim(cfg(), store, row, "node-a", at).call
    assert call is not None  # three held attempts: one more is allowed
    store.finish_unanswered(call["id"], "no_answer", "19", at + timedelta(seconds=40),
                            at + timedelta(minutes=30))
    later = at + timedelta(hours=1)
    assert claim(cfg(), store, row, "node-a", later).decision.reason == "attempt_cap"
    p = plan(cfg(), store, later)
    assert p.due == [] and [(c["number"], v.reason) for c, v in p.waiting] == [
        (REAL, "attempt_cap")]
