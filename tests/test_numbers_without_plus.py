"""An international number written without its '+' (262692123456 for Réunion, as the callback
line already reads a caller ID) is read by the opposition form, the opposition import and the
contact import; a headerless opposition line of two numbers split by ';' gives two
oppositions, as the ',' form does."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr.numbers import NumberRejected, parse_callee
from ivr.opposition_input import opposition_number
from ivr.records.contacts import import_csv, import_optouts
from ivr.records.privacy import normalise_number
from ivr.store import Store

from conftest import sqlite_only

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
REUNION = "+262692123456"


@pytest.mark.parametrize("text", ["262692123456", "262 692 12 34 56", "0692 12 34 56",
                                  "+262 692 12 34 56"])
def test_an_overseas_number_without_its_plus_is_read(text: str) -> None:
    assert opposition_number(text, "FR") == REUNION
    assert normalise_number(text, "FR") == REUNION
    assert parse_callee(text, "FR") == REUNION


@pytest.mark.parametrize("text", ["0612345678 0698765432", "262692123456 1", "2626921234567"])
def test_still_refused(text: str) -> None:
    with pytest.raises(NumberRejected):
        opposition_number(text, "FR")
    with pytest.raises(NumberRejected):
        parse_callee(text, "FR")


def test_the_contact_import_takes_it(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("number,name\n262692123456,Réunion\n33612345680,Paris\n", encoding="utf-8")
    report = import_csv(store, path, campaign="c1", source="L", basis="consent",
                        acquired_on="2026-01-01", default_region="FR", now=NOW)
    assert report.rejected == [] and report.added == 2
    assert [r["number"] for r in store.q("SELECT number FROM contacts ORDER BY id")] == [
        REUNION, "+33612345680"]


def optouts(store: Store) -> list[str]:
    return sorted(r["number"] for r in store.q("SELECT number FROM optouts"))


def test_the_opposition_import_takes_it_and_splits_a_semicolon_line(
        store: Store, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("06 12 34 56 78\n262692123456\n06 12 34 56 81 ; 06 12 34 56 82\n"
                    "tel:+33612345690;ext=5\n06 12 34 56 83;poste 12\n", encoding="utf-8")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert (added, optouts(store)) == (4, sorted([
        "+33612345678", REUNION, "+33612345681", "+33612345682"]))
    # An extension is still not an opposition of the switchboard's number.
    assert [(line, reason.split(": ", 1)[1][:13]) for line, reason in rejected] == [
        (4, "an extension "), (5, "an extension ")]


@sqlite_only
def test_the_comma_form_and_the_semicolon_form_agree(store: Store, tmp_path: Path) -> None:
    for sep in (",", ";"):
        path = tmp_path / f"o{sep}.csv"
        path.write_text(f"06 12 34 56 78\n06 12 34 56 84 {sep} 06 12 34 56 85\n")
        assert import_optouts(store, path, via="post", default_region="FR", now=NOW)[1] == []
    assert optouts(store) == ["+33612345678", "+33612345684", "+33612345685"]


@sqlite_only
def test_a_second_number_column_is_opposed_too(store: Store, tmp_path: Path) -> None:
    """number,mobile: the person's two lines object. Only the 'number' column was read: the
    mobile stayed callable and the import said nothing. Only columns named as a phone of the
    person are read (not a comment, not the advisor's line), by _extra_optouts' rule."""
    path = tmp_path / "o.csv"
    path.write_text("ref,number,mobile,date,commentaire,telephone_conseiller\n"
                    "12345,06 12 34 56 78,06 12 34 56 79,2026-01-05,rappel 06 12 34 56 90,"
                    "06 12 34 56 91\n"
                    "12346,06 12 34 56 80,,2026-01-06,,\n", encoding="utf-8")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert (added, rejected) == (3, [])
    # a comment and the advisor's line are not the person's: never opposed
    assert optouts(store) == ["+33612345678", "+33612345679", "+33612345680"]
