"""Another contact's extra cell naming the person among other people ("Jean 06 12 34 56 78,
Marie Dupont 06 98 76 54 32"): the access request shows the person's number text only, the
erasure removes only the person's part and keeps Marie's; and the number grouped in threes
("+33 612 345 678", "0612 345 678") is found by the export, the erasure and the leftover scan
(both backends)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ivr.records.privacy import gdpr_erase, gdpr_export
from ivr.store import Store

from conftest import add_contact

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
JEAN = "+33612345678"
MARIE = "+33698765432"


def extras(store: Store) -> list[dict[str, Any]]:
    return [json.loads(r["extra"]) for r in store.q("SELECT extra FROM contacts ORDER BY id")]


def test_a_cell_naming_two_people_gives_up_only_the_requesters_part(store: Store) -> None:
    add_contact(store, "+33612345700", at=NOW, name="Luc", extra={
        "parrains": "Jean 06 12 34 56 78, Marie Dupont 06 98 76 54 32", "ville": "Paris",
        "note": "Jean 0612345678 Marie 0698765432"})
    data = gdpr_export(store, JEAN, NOW)
    assert data["named_in_other_contacts"] == [
        {"column": "parrains", "value": "06 12 34 56 78"},
        {"column": "note", "value": "0612345678"}]
    text = json.dumps(data, ensure_ascii=False)
    for other in ("Marie", "Dupont", "98 76", "0698765432", "Luc", "Paris"):
        assert other not in text  # a third person's name and number stay hers
    counts = gdpr_erase(store, JEAN, NOW)
    assert counts["extra_cells_cleared"] == 2
    assert extras(store) == [{"parrains": "[effacé], Marie Dupont 06 98 76 54 32",
                              "ville": "Paris", "note": "Jean [effacé] Marie 0698765432"}]
    assert store.places_holding(JEAN) == []
    assert store.places_holding(MARIE) == ["contacts.extra"]  # Marie's data is kept
    assert gdpr_export(store, MARIE, NOW)["named_in_other_contacts"] == [
        {"column": "parrains", "value": "06 98 76 54 32"},
        {"column": "note", "value": "0698765432"}]


def test_a_cell_holding_the_person_alone_is_removed(store: Store) -> None:
    add_contact(store, "+33612345700", at=NOW, extra={
        "parrain": "06 12 34 56 78 ; +33 6 12 34 56 78", "ville": "Nice"})
    assert gdpr_erase(store, JEAN, NOW)["extra_cells_cleared"] == 1
    assert extras(store) == [{"ville": "Nice"}]


def test_the_number_grouped_in_threes_is_found_exported_and_erased(store: Store) -> None:
    forms = ["+33 612 345 678", "0612 345 678"]
    for i, form in enumerate(forms):
        add_contact(store, f"+3361234570{i}", at=NOW, extra={"parrain": form, "ville": "Lyon"})
    add_contact(store, "+33612345709", at=NOW, extra={"parrain": "0612 345 679"})  # not Jean
    assert store.places_holding(JEAN) == ["contacts.extra"]
    assert gdpr_export(store, JEAN, NOW)["named_in_other_contacts"] == [
        {"column": "parrain", "value": form} for form in forms]
    assert gdpr_erase(store, JEAN, NOW)["extra_cells_cleared"] == 2
    assert extras(store) == [{"ville": "Lyon"}, {"ville": "Lyon"}, {"parrain": "0612 345 679"}]
    assert store.places_holding(JEAN) == []
    assert store.places_holding("+33612345679") == ["contacts.extra"]
