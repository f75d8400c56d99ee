"""A person's number in ANOTHER contact's extra column (a list's "parrain" column): the access
request shows that cell (and nothing else of the other row), the erasure removes it in the
same transaction, and the leftover scan sees it in national form too (both backends)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr.errors import IvrError
from ivr.records.contacts import import_csv
from ivr.records.privacy import gdpr_erase, gdpr_export
from ivr.store import Store

from conftest import add_contact

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
JEAN = "+33612345678"
LIST = ("number;name;parrain;ville\n"
        "06 12 34 56 78;Jean;;Lyon\n"
        "06 12 34 56 79;Marie;+33612345678;Nice\n"
        "06 12 34 56 80;Luc;06 12 34 56 78;Paris\n"
        "06 12 34 56 81;Ana;06.12.34.56.79;Lille\n"          # Marie, not Jean
        "06 12 34 56 82;Zoé;Jean 06-12-34-56-78;Caen\n"
        "06 12 34 56 83;Léo;+336123456789;Metz\n")           # a longer number: not Jean's


def imported(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(LIST, encoding="utf-8")
    report = import_csv(store, path, campaign="c1", source="L", basis="consent",
                        acquired_on="2026-01-01", default_region="FR", now=NOW)
    assert report.added == 6 and report.rejected == []


def extras(store: Store) -> dict[str, dict[str, str]]:
    return {r["name"]: json.loads(r["extra"])
            for r in store.q("SELECT name, extra FROM contacts ORDER BY id")}


def test_the_export_shows_each_cell_naming_the_person_and_nothing_else_of_the_row(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path)
    data = gdpr_export(store, JEAN, NOW)
    assert data["named_in_other_contacts"] == [
        {"column": "parrain", "value": "+33612345678"},
        {"column": "parrain", "value": "06 12 34 56 78"},
        {"column": "parrain", "value": "06-12-34-56-78"}]  # the number's text alone
    text = json.dumps(data, ensure_ascii=False)
    for other in ("Marie", "Luc", "Zoé", "Nice", "Paris", "Caen", "+33612345679"):
        assert other not in text  # the other people's rows stay theirs
    audit = store.one("SELECT detail FROM audit WHERE action = 'gdpr_export'")
    assert json.loads(audit["detail"])["named_in_other_contacts"] == 3  # type: ignore[index]


def test_the_erasure_removes_those_cells_in_any_form_and_keeps_the_rest(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path)
    counts = gdpr_erase(store, JEAN, NOW)
    assert (counts["contacts"], counts["extra_cells_cleared"]) == (1, 3)
    assert extras(store) == {
        "Marie": {"ville": "Nice"}, "Luc": {"ville": "Paris"},
        "Ana": {"parrain": "06.12.34.56.79", "ville": "Lille"},
        "Zoé": {"ville": "Caen"}, "Léo": {"parrain": "+336123456789", "ville": "Metz"}}
    assert store.places_holding(JEAN) == []
    assert gdpr_export(store, JEAN, NOW)["named_in_other_contacts"] == []


def test_the_scan_sees_a_national_form_in_extra(store: Store) -> None:
    add_contact(store, "+33612345679", at=NOW, extra={"parrain": "06 12 34 56 78"})
    assert store.places_holding(JEAN) == ["contacts.extra"]
    assert store.places_holding("+33612345677") == []  # a neighbour is not named
    add_contact(store, "+33612345680", at=NOW, extra={"tel": "+33612345677"})
    assert store.places_holding("+33612345677") == ["contacts.extra"]


def test_a_national_form_in_a_text_that_is_not_json_stops_the_erasure(store: Store) -> None:
    add_contact(store, "+33612345679", at=NOW, extra="parrain: 06 12 34 56 78")  # by hand
    assert store.places_holding(JEAN) == ["contacts.extra"]
    with pytest.raises(IvrError, match="nothing changed: the number is also in contacts.extra"):
        gdpr_erase(store, JEAN, NOW)
    assert gdpr_export(store, JEAN, NOW)["named_in_other_contacts"] == []  # no cell to show


def test_an_erasure_refused_for_another_place_leaves_the_cells_as_they_were(
        store: Store, tmp_path: Path) -> None:
    imported(store, tmp_path)
    before = extras(store)
    # no rule covers a list's name (a contact's name has one now: its number's text goes)
    add_contact(store, "+33612345690", at=NOW, source=f"copy of {JEAN}")
    with pytest.raises(IvrError, match="nothing changed: the number is also in contacts.source"):
        gdpr_erase(store, JEAN, NOW)
    assert {k: v for k, v in extras(store).items() if k in before} == before
    assert store.one("SELECT COUNT(*) AS n FROM contacts WHERE number = ?",
                     (JEAN,))["n"] == 1  # type: ignore[index]


@pytest.mark.parametrize("written", ["06 12 34 56 78", "+33612345678"])
def test_a_number_in_another_contacts_name_is_shown_and_erased(
        store: Store, tmp_path: Path, written: str) -> None:
    """Jean's number in Paul's name cell: in national form the erasure reported success and
    left it (only extra was searched for national forms), in E.164 form it stopped every
    erasure of Jean for good ("that data needs its own erasure rule"). The number's own text
    goes now; Paul's name stays his."""
    path = tmp_path / "list.csv"
    path.write_text(f"number,name\n0612345678,Jeanne\n0698765432,Paul (fils de Jeanne {written})\n"
                    "0698765433,Marc\n", encoding="utf-8")
    import_csv(store, path, campaign="c1", source="L", basis="consent",
               acquired_on="2026-01-01", default_region="FR", now=NOW)
    assert gdpr_export(store, JEAN, NOW)["named_in_other_contacts"] == [
        {"column": "name", "value": written}]
    counts = gdpr_erase(store, JEAN, NOW)
    # the contact's name and its binding's (schema 25: c1's list's): two cells, shown once
    assert (counts["contacts"], counts["extra_cells_cleared"]) == (1, 2)
    assert [r["name"] for r in store.q("SELECT name FROM contacts ORDER BY id")] == [
        "Paul (fils de Jeanne [effacé])", "Marc"]
    assert [r["name"] for r in store.q("SELECT name FROM campaign_contacts ORDER BY "
                                       "contact_id")] == ["Paul (fils de Jeanne [effacé])",
                                                          "Marc"]
    assert store.places_holding(JEAN) == []
