"""An erasure keeps what the calling rules need of the number (schema 18: erasure_holds), under
its keyed hash and for a bounded time, so that a person who refused (key 2) or reached the
attempt cap, then asked to be erased, is not called sooner when a later list holds the number
again (before: the refusal was deleted and the attempts anonymised, and the claim allowed the
re-imported number the next day). Both backends; the list is imported as the CLI does."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, attempt, contact
from ivr.store.schema import MIGRATIONS
from ivr.campaign.planning import claim, verdict_for
from ivr.records.contacts import import_csv
from ivr.records.privacy import gdpr_erase, gdpr_export, purge
from ivr.store import Store
from ivr.store.base import CallResult, utc
from test_retry_next_allowed import REAL, cfg  # campaign c1, Paris windows

# A Monday, 17:00 in Paris (summer time); 60 days later is a Friday (2026-11-06), 16:00 in
# Paris (winter time): both inside the windows, as every day the tests claim on.
REFUSED = datetime(2026, 9, 7, 15, 0, tzinfo=timezone.utc)
REFUSAL = CallResult(outcome="declined", stage="goodbye", keys="2", heard={}, choice="refusal",
                     choice_key="2")


def imported(store: Store, tmp_path: Path, at: datetime, name: str = "list") -> dict[str, Any]:
    """The number imported from a list (ivr/records/contacts.import_csv, as `ivr import`)."""
    path = tmp_path / f"{name}.csv"
    path.write_text("number;name\n01 62 00 00 10;Jean\n", encoding="utf-8")
    report = import_csv(store, path, campaign="c1", source=name, basis="consent",
                        acquired_on="2026-01-01", default_region="FR", now=at)
    assert report.rejected == [] and report.added + report.merged == 1
    return contact(store, REAL)


def refused(store: Store, tmp_path: Path) -> None:
    """Imported, called on REFUSED, and the person pressed 2."""
    row = imported(store, tmp_path, REFUSED - timedelta(days=1))
    call = claim(cfg(), store, row, "node-a", REFUSED).call
    assert call is not None
    store.finish_answered(call["id"], REFUSAL, REFUSED + timedelta(seconds=30))


def holds(store: Store) -> list[dict[str, Any]]:
    return store.q("SELECT * FROM erasure_holds")


def test_a_refusal_survives_the_erasure_until_its_cooldown_ends(store: Store,
                                                                 tmp_path: Path) -> None:
    refused(store, tmp_path)
    counts = gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    assert counts["consents"] == 1  # the refusal's proof row is gone
    # A new list holds the number again.
    row = imported(store, tmp_path, REFUSED + timedelta(days=2), "list-2")
    for day in (3, 59):
        got = claim(cfg(), store, row, "node-a", REFUSED + timedelta(days=day))
        assert (got.call, got.decision.reason) == (None, "refusal_cooldown"), day
        assert got.decision.next_allowed == REFUSED + timedelta(days=60, seconds=30)
        # the plan's bulk history reads it too (verdict_for: store.history)
        assert verdict_for(cfg(), store, row, REFUSED + timedelta(days=day)).reason == \
            "refusal_cooldown"
    got = claim(cfg(), store, row, "node-a", REFUSED + timedelta(days=60, minutes=1))
    assert got.call is not None and got.decision.allowed
    assert counts["holds_kept"] == 1


def test_the_attempt_cap_survives_the_erasure_until_the_window_passes(
        store: Store, tmp_path: Path) -> None:
    row = imported(store, tmp_path, REFUSED - timedelta(days=1))
    for day in range(4):  # Monday to Thursday: the cap (4 in 30 days, any campaign) reached
        call = attempt(store, row, f"other-{day}", "+33162000000", REFUSED + timedelta(days=day))
        store.finish_unanswered(call["id"], "no_answer", "19",
                                REFUSED + timedelta(days=day, seconds=40), None)
    counts = gdpr_erase(store, REAL, REFUSED + timedelta(days=4))
    row = imported(store, tmp_path, REFUSED + timedelta(days=5), "list-2")
    for day in (7, 29):  # Monday 14 September; Tuesday 6 October
        got = claim(cfg(), store, row, "node-a", REFUSED + timedelta(days=day))
        assert (got.call, got.decision.reason) == (None, "attempt_cap"), day
    # Wednesday 7 October 10:00: the first attempt is 30 days old, three count
    got = claim(cfg(), store, row, "node-a", REFUSED + timedelta(days=30))
    assert got.call is not None and got.decision.allowed
    assert (counts["calls"], counts["holds_kept"]) == (4, 1)


def test_nothing_is_kept_without_a_recent_refusal_or_attempt(store: Store,
                                                             tmp_path: Path) -> None:
    row = imported(store, tmp_path, REFUSED - timedelta(days=100))
    old = REFUSED - timedelta(days=70)  # a refusal past its cooldown, an attempt past the cap
    call = attempt(store, row, "c1", "+33162000000", old)
    store.finish_answered(call["id"], REFUSAL, old + timedelta(seconds=30))
    counts = gdpr_erase(store, REAL, REFUSED)
    assert (counts["calls"], counts["consents"], counts["holds_kept"]) == (1, 1, 0)
    assert holds(store) == []
    never = "+33162000011"
    exported = gdpr_export(store, never, REFUSED)
    assert exported["erasure_hold"] is None
    assert gdpr_erase(store, never, REFUSED)["holds_kept"] == 0 and holds(store) == []


def test_an_opposed_number_keeps_no_hold(store: Store, tmp_path: Path) -> None:
    refused(store, tmp_path)
    store.add_optout(REAL, "letter", REFUSED + timedelta(hours=1))
    assert gdpr_erase(store, REAL, REFUSED + timedelta(days=1))["holds_kept"] == 0
    assert holds(store) == [] and store.is_opted_out(REAL)


def test_the_hold_is_a_hash_and_times_shown_by_the_export(store: Store, tmp_path: Path) -> None:
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    [hold] = holds(store)
    assert hold["number_hash"] == store.number_hash(REAL) and REAL not in json.dumps(hold)
    assert hold["last_refusal"] == utc(REFUSED + timedelta(seconds=30))
    assert json.loads(hold["attempts"]) == [utc(REFUSED)]
    assert hold["kept_until"] == utc(REFUSED + timedelta(days=60, seconds=30))
    shown = gdpr_export(store, REAL, REFUSED + timedelta(days=2))
    assert shown["erasure_hold"] == {"last_refusal": hold["last_refusal"],
                                     "attempts": [utc(REFUSED)],
                                     "kept_until": hold["kept_until"]}
    assert shown["contacts"] == [] and shown["consents"] == []


def test_a_second_erasure_merges_into_the_hold(store: Store, tmp_path: Path) -> None:
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    row = imported(store, tmp_path, REFUSED + timedelta(days=2), "list-2")
    later = REFUSED + timedelta(days=3)  # dialled by hand (no rules), unanswered
    call = attempt(store, row, "c1", "+33162000000", later)
    store.finish_unanswered(call["id"], "no_answer", "19", later + timedelta(seconds=40), None)
    assert gdpr_erase(store, REAL, REFUSED + timedelta(days=4))["holds_kept"] == 1
    [hold] = holds(store)  # the refusal kept, the attempts of both erasures
    assert hold["last_refusal"] == utc(REFUSED + timedelta(seconds=30))
    assert json.loads(hold["attempts"]) == [utc(REFUSED), utc(later)]
    assert hold["kept_until"] == utc(REFUSED + timedelta(days=60, seconds=30))


def test_the_purge_deletes_an_expired_hold_and_the_claim_ignores_it(
        store: Store, tmp_path: Path) -> None:
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    purge(store, timedelta(days=60), REFUSED + timedelta(days=30), keep=timedelta(days=60))
    assert len(holds(store)) == 1  # still needed
    # Expired but not yet purged: a claim with a longer cooldown than the erasure's ignores it.
    row = imported(store, tmp_path, REFUSED + timedelta(days=63), "list-2")  # a Monday
    longer = cfg()
    longer.schedule.refusal_cooldown_days = 90
    got = claim(longer, store, row, "node-a", REFUSED + timedelta(days=63))
    assert got.call is not None
    store.finish_unanswered(got.call["id"], "no_answer", "19",
                            REFUSED + timedelta(days=63, seconds=40), None)
    purge(store, timedelta(days=60), REFUSED + timedelta(days=63), keep=timedelta(days=60))
    assert holds(store) == []


def test_a_sqlite_store_of_schema_17_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Store.open(path, optout_key=b"k")
    old.db.conn.executescript("DROP TABLE erasure_holds; PRAGMA user_version = 17")
    old.db.conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 17
    again = Store.open(path, optout_key=b"k")
    assert again.version == len(MIGRATIONS) and holds(again) == []
    assert again.unscanned_columns() == []


def test_a_postgresql_store_of_schema_17_gets_the_table(pg_url: str) -> None:
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_url, optout_key=b"test-key")
    old.db.execute("DROP TABLE erasure_holds")
    old.db.execute("DELETE FROM schema_version WHERE version >= 18")
    old.close()
    again = PgTestStore.open(pg_url, optout_key=b"test-key")
    try:
        assert again.version == len(MIGRATIONS) and holds(again) == []
        assert again.unscanned_columns() == []
    finally:
        again.close()


@pytest.mark.parametrize("cooldown", [60, 90])
def test_the_hold_lasts_the_configured_cooldown(store: Store, tmp_path: Path,
                                                cooldown: int) -> None:
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1),
               refusal_cooldown=timedelta(days=cooldown))
    assert holds(store)[0]["kept_until"] == utc(REFUSED + timedelta(days=cooldown, seconds=30))


def test_the_forms_of_one_box_line_share_one_merged_hold(store: Store) -> None:
    """An overseas box held under both its forms (an older release kept them apart): each
    form's erasure merges into the hold of both, so a list holding either form finds it."""
    box, regional = "+33947501234", "+590947501234"
    calls = {}
    for number, day in ((regional, 0), (box, 1)):
        row = add_contact(store, number, at=REFUSED - timedelta(days=1))
        calls[number] = attempt(store, row, "c1", "+33162000000", REFUSED + timedelta(days=day))
    store.finish_answered(calls[regional]["id"], REFUSAL, REFUSED + timedelta(seconds=30))
    store.finish_unanswered(calls[box]["id"], "no_answer", "19",
                            REFUSED + timedelta(days=1, seconds=40), None)
    assert gdpr_erase(store, box, REFUSED + timedelta(days=2))["holds_kept"] == 2
    kept = {r["number_hash"]: r for r in holds(store)}
    assert set(kept) == {store.number_hash(box), store.number_hash(regional)}
    for hold in kept.values():
        assert hold["last_refusal"] == utc(REFUSED + timedelta(seconds=30))
        assert json.loads(hold["attempts"]) == [utc(REFUSED), utc(REFUSED + timedelta(days=1))]
        assert hold["kept_until"] == utc(REFUSED + timedelta(days=60, seconds=30))


def test_held_among_names_the_numbers_with_a_live_hold(store: Store, tmp_path: Path) -> None:
    """What the plan's quiet shortcut needs (a re-imported number has no rows of its own)."""
    refused(store, tmp_path)
    gdpr_erase(store, REAL, REFUSED + timedelta(days=1))
    others = ["+33162000011", "+33947501234"]
    assert store.held_among([REAL, *others], REFUSED + timedelta(days=60)) == {REAL}
    assert store.held_among([REAL, *others], REFUSED + timedelta(days=61)) == set()
    assert store.held_among([], REFUSED) == set()
