"""A contact's name is its campaign's list's (schema 25): one number on two parties' lists
showed the first list's name on both consoles. Each binding keeps the name its own list gave;
a share copies the origin's; the access request and the erasure see the bindings' names
(both backends), and a store of schema 24 upgrades with names only where its list gave them."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conftest import sqlite_at_schema
from ivr.records.contacts import import_csv, share_list
from ivr.records.privacy import gdpr_erase, gdpr_export
from ivr.store import Store
from ivr.store.schema import MIGRATIONS

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
JEAN = "+33612345678"


def imported(store: Store, tmp_path: Path, campaign: str, source: str, text: str) -> Any:
    path = tmp_path / f"{campaign}-{source}.csv"
    path.write_text(text, encoding="utf-8")
    return import_csv(store, path, campaign=campaign, source=source, basis="consent",
                      acquired_on="2026-01-10", default_region="FR", now=NOW)


def names(store: Store, campaign: str) -> dict[str, Any]:
    return {r["number"]: r["name"] for r in store.contacts_page(campaign)}


def test_each_campaign_shows_the_name_its_own_list_gave(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jean Dupont\n"
                                         "0612345679,Marie\n")
    imported(store, tmp_path, "b", "lb", "number,name\n0612345678,J. D. (militant)\n"
                                         "0612345679,\n0612345680,Luc\n")
    assert names(store, "a") == {JEAN: "Jean Dupont", "+33612345679": "Marie"}
    # b's list gave Marie no name: b shows none, not a's
    assert names(store, "b") == {JEAN: "J. D. (militant)", "+33612345679": None,
                                 "+33612345680": "Luc"}


def test_a_binding_keeps_its_first_name_and_gets_one_it_lacked(store: Store,
                                                                tmp_path: Path) -> None:
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jean\n0612345679,\n")
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jeannot\n"
                                         "0612345679,Marie\n")
    assert names(store, "a") == {JEAN: "Jean", "+33612345679": "Marie"}


def test_a_shared_list_brings_its_names(store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jean\n")
    imported(store, tmp_path, "c", "la", "number,name\n0612345679,Marie\n")  # c's own "la"
    share_list(store, source="la", campaign="b", basis="consent", now=NOW, from_campaign="a")
    assert names(store, "b") == {JEAN: "Jean"}


def test_a_name_on_another_campaigns_binding_is_shown_once_and_erased(
        store: Store, tmp_path: Path) -> None:
    """Jean's number in Paul's name on b's list only: the contact's own name is a's."""
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jean\n0698765432,Paul\n")
    imported(store, tmp_path, "b", "lb", "number,name\n0698765432,Paul (fils de 06 12 34 56 78)\n")
    assert gdpr_export(store, JEAN, NOW)["named_in_other_contacts"] == [
        {"column": "name", "value": "06 12 34 56 78"}]
    counts = gdpr_erase(store, JEAN, NOW)
    assert (counts["contacts"], counts["extra_cells_cleared"]) == (1, 1)
    assert names(store, "b") == {"+33698765432": "Paul (fils de [effacé])"}
    assert names(store, "a") == {"+33698765432": "Paul"}
    assert store.places_holding(JEAN) == []


def test_the_persons_own_bindings_and_their_names_go_with_the_erasure(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path, "a", "la", "number,name\n0612345678,Jean\n")
    imported(store, tmp_path, "b", "lb", "number,name\n0612345678,Jean D.\n")
    shown = gdpr_export(store, JEAN, NOW)["campaigns"]
    assert sorted((r["campaign"], r["name"]) for r in shown) == [("a", "Jean"), ("b", "Jean D.")]
    gdpr_erase(store, JEAN, NOW)
    assert store.q("SELECT COUNT(*) AS n FROM campaign_contacts")[0]["n"] == 0


def v24_store(path: Path) -> None:
    """A store of schema 24: one contact created by list la of a, shared to c, and bound to
    b by b's list lb (which wrote no name: the contact's came from la)."""
    conn = sqlite_at_schema(path, 24)
    ts = "2026-01-01T00:00:00.000Z"
    conn.execute("INSERT INTO contacts (number, name, source, basis, status, created_at, "
                 "updated_at) VALUES (?, 'Jean', 'la', 'consent', 'pending', ?, ?)",
                 (JEAN, ts, ts))
    conn.executemany("INSERT INTO campaign_contacts (contact_id, campaign, source, basis, "
                     "status, bound_at) VALUES (1, ?, ?, 'consent', 'pending', ?)",
                     [("a", "la", ts), ("c", "la", ts), ("b", "lb", ts)])
    conn.commit()
    conn.close()


def test_the_upgrade_names_only_the_bindings_of_the_list_that_gave_the_name(
        tmp_path: Path) -> None:
    v24_store(tmp_path / "ivr.db")
    store = Store.open(tmp_path / "ivr.db", optout_key=b"k")
    try:
        assert store.version == len(MIGRATIONS)
        assert [names(store, c) for c in ("a", "b", "c")] == [{JEAN: "Jean"}, {JEAN: None},
                                                               {JEAN: "Jean"}]
        # the erasure's partial index covers the new column (schema 12's, rebuilt)
        index = store.q("SELECT sql FROM sqlite_master WHERE name = 'campaign_contacts_plus'")
        assert "instr(name, '+')" in index[0]["sql"]
    finally:
        store.close()


def test_the_postgresql_upgrade_names_the_same_bindings(pg_store_url: str) -> None:
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    old.q("ALTER TABLE campaign_contacts DROP COLUMN name")  # back to 24 (its index goes too)
    old.one("WITH gone AS (DELETE FROM schema_version WHERE version >= 25 RETURNING version) "
            "SELECT COUNT(*) AS n FROM gone")
    contact = old.one("INSERT INTO contacts (number, name, source, basis, created_at, "
                      "updated_at) VALUES (?, 'Jean', 'la', 'consent', 'x', 'x') "
                      "RETURNING id", (JEAN,))
    for campaign, source in (("a", "la"), ("c", "la"), ("b", "lb")):
        old.q("INSERT INTO campaign_contacts (contact_id, campaign, source, bound_at) "
              "VALUES (?, ?, ?, 'x')", (contact["id"], campaign, source))  # type: ignore[index]
    old.close()
    again = PgTestStore.open(pg_store_url, optout_key=b"test-key")
    try:
        assert again.version == len(MIGRATIONS)
        assert [names(again, c) for c in ("a", "b", "c")] == [{JEAN: "Jean"}, {JEAN: None},
                                                               {JEAN: "Jean"}]
        index = again.one("SELECT indexdef FROM pg_indexes WHERE indexname = "
                          "'campaign_contacts_plus'")
        assert index is not None and "strpos(name" in index["indexdef"]
    finally:
        again.close()
