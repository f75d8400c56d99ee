"""Proof of consent shows an objector's campaigns as opted out (not the binding's raw
"pending"), and an audit row about a number the store no longer holds carries no keyed
subject hash (the pseudonym an erasure removed is not written back). Both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ivr.records.privacy import campaigns_of, gdpr_erase, gdpr_export, optout_add
from ivr.store import Store

from conftest import add_contact

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
LUC, MARIE, STRANGER = "+33612345680", "+33612345679", "+33612345681"


def test_the_campaigns_of_an_objector_read_opted_out(store: Store) -> None:
    add_contact(store, LUC, at=NOW, campaigns=("c1", "c2"))
    add_contact(store, MARIE, at=NOW, campaigns=("c1",))
    optout_add(store, "06 12 34 56 80", "post", NOW, "FR")
    assert [(r["campaign"], r["status"]) for r in campaigns_of(store, LUC)] == [
        ("c1", "opted_out"), ("c2", "opted_out")]
    assert [(r["campaign"], r["status"]) for r in campaigns_of(store, MARIE)] == [
        ("c1", "pending")]


def subjects(store: Store, action: str) -> list[str | None]:
    return [r["subject_hash"] for r in store.q(
        "SELECT subject_hash FROM audit WHERE action = ? ORDER BY id", (action,))]


def test_no_subject_hash_once_the_store_holds_nothing_of_the_number(store: Store) -> None:
    add_contact(store, MARIE, at=NOW)
    add_contact(store, LUC, at=NOW)
    store.audit("consent_viewed", MARIE, {}, NOW)  # held: the look-up names its subject
    assert subjects(store, "consent_viewed") == [store.number_hash(MARIE)]
    gdpr_erase(store, MARIE, NOW)
    later = NOW + timedelta(days=1)
    gdpr_export(store, MARIE, later)  # an access request after the erasure
    store.audit("consent_viewed", MARIE, {}, later)  # the console's look-up (web/pages.py)
    store.audit("consent_viewed", STRANGER, {}, later)  # never held at all
    assert subjects(store, "gdpr_export") == [None]
    assert subjects(store, "consent_viewed") == [None, None, None]  # the first one erased
    # An objector's hash stays (the optouts row keeps it), and a held number's is written.
    optout_add(store, LUC, "post", NOW, "FR")
    gdpr_erase(store, LUC, NOW)
    gdpr_export(store, LUC, later)
    store.audit("consent_viewed", LUC, {}, later)
    assert subjects(store, "gdpr_export") == [None, store.number_hash(LUC)]
    assert subjects(store, "consent_viewed")[-1] == store.number_hash(LUC)


def test_the_retention_purge_clears_old_subjects_but_an_objectors(store: Store) -> None:
    """`ivr purge` deleted a person's data and kept the keyed hash on their old audit rows (an
    access export, a look-up): a pseudonym of someone the store no longer holds. An old row
    keeps it for an objector only; a row within the retention period keeps it."""
    from ivr.records.privacy import purge
    add_contact(store, MARIE, at=NOW)
    add_contact(store, LUC, at=NOW)
    gdpr_export(store, MARIE, NOW)
    optout_add(store, LUC, "post", NOW, "FR")
    gdpr_export(store, LUC, NOW)
    later = NOW + timedelta(days=800)
    newer = "+33612345682"
    add_contact(store, newer, at=later - timedelta(days=1))
    store.audit("consent_viewed", newer, {}, later - timedelta(days=1))  # recent: kept
    recent = subjects(store, "consent_viewed")
    assert recent == [store.number_hash(newer)]
    purge(store, timedelta(days=730), later)
    assert subjects(store, "gdpr_export") == [None, store.number_hash(LUC)]
    assert subjects(store, "consent_viewed") == recent
