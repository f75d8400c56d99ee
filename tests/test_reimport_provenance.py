"""Importing again numbers already bound to the campaign under another list or basis
(ivr/records/contacts.py): their binding keeps its first provenance, as before, but the import
now says so in one line and its audit row counts them (before: "2 unchanged", nothing else,
and the audit row named the new basis as if applied). Both backends."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ivr.errors import ImportFileError
from ivr.records import contacts
from ivr.records.contacts import PartialImportError
from ivr.store.sqlite import Store

from test_contacts_import import LATER, run, write

TWO = "number\n01 99 00 00 10\n01 99 00 00 11\n"


def bindings(store: Store) -> dict[str, tuple[str, str]]:
    return {r["number"]: (r["source"], r["basis"]) for r in store.q(
        "SELECT k.number, b.source, b.basis FROM campaign_contacts b JOIN contacts k "
        "ON k.id = b.contact_id WHERE b.campaign = 'c1'")}


def last_audit(store: Store) -> dict[str, Any]:
    row = store.q("SELECT detail FROM audit WHERE action = 'import' ORDER BY id DESC")[0]
    return json.loads(row["detail"])


def test_a_corrected_basis_is_not_applied_and_the_import_says_so(
        store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, TWO), basis="consent")
    report = run(store, write(tmp_path, TWO), basis="rented_file", now=LATER)
    assert report.warnings == [
        "2 number(s) already bound to campaign 'c1' with another source/basis were left as "
        "they were (first: list-a/consent): a number keeps the list and basis it was first "
        "bound with in a campaign"]
    assert (report.added, report.unchanged, report.provenance_kept) == (0, 2, 2)
    assert set(bindings(store).values()) == {("list-a", "consent")}
    detail = last_audit(store)
    assert detail["basis"] == "rented_file"  # what was asked, applied to none of them:
    assert (detail["provenance_kept"], detail["kept_as"]) == (2, {"list-a/consent": 2})


def test_another_source_keeps_the_first_and_binds_only_the_new_numbers(
        store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, TWO), source="list-a", basis="consent")
    report = run(store, write(tmp_path, TWO + "01 99 00 00 12\n"), source="list-b",
                 basis="member_file", now=LATER)
    assert (report.added, report.unchanged, report.provenance_kept) == (1, 2, 2)
    assert report.warnings[-1].endswith(
        "(first: list-a/consent): a number keeps the list and basis it was first bound with "
        "in a campaign; list-b/member_file applies to the file's 1 other(s)")
    assert bindings(store) == {"+33199000010": ("list-a", "consent"),
                               "+33199000011": ("list-a", "consent"),
                               "+33199000012": ("list-b", "member_file")}
    assert last_audit(store)["provenance_kept"] == 2


def test_the_same_list_again_or_another_campaign_says_nothing(
        store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, TWO), basis="consent")
    again = run(store, write(tmp_path, TWO), basis="consent", acquired_on="2025-02-01",
                now=LATER)  # another acquisition date is not another provenance
    assert (again.unchanged, again.provenance_kept, again.warnings) == (2, 0, [])
    assert "provenance_kept" not in last_audit(store)
    other = contacts.import_csv(store, write(tmp_path, TWO), campaign="c2", source="list-x",
                                basis="rented_file", acquired_on=None, default_region="FR",
                                now=LATER + timedelta(days=1))
    assert (other.provenance_kept, other.warnings) == (0, [contacts.NO_DATE])


def test_several_first_provenances_and_repeats_across_batches_count_once(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    run(store, write(tmp_path, "number\n01 99 00 00 10\n01 99 00 00 11\n"), source="list-a")
    run(store, write(tmp_path, "number\n01 99 00 00 12\n"), source="list-b",
        basis="member_file")
    report = run(store, write(tmp_path, "number\n01 99 00 00 10\n01 99 00 00 11\n"
                                        "01 99 00 00 12\n01 99 00 00 10\n"),
                 source="list-c", basis="rented_file", now=LATER)
    assert report.provenance_kept == 3 and report.duplicates == 1
    assert "(first: list-a/consent (2), list-b/member_file (1))" in report.warnings[-1]


def test_a_partial_import_says_it_too(store: Store, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    run(store, write(tmp_path, TWO), basis="consent")
    broken = TWO + '01 99 00 00 12,"x\n' + "x" * 140_000 + "\n"
    with pytest.raises(ImportFileError) as caught:
        run(store, write(tmp_path, broken.replace("number\n", "number,name\n")
                         .replace("10\n", "10,a\n").replace("11\n", "11,b\n")),
            basis="rented_file", now=LATER)
    assert isinstance(caught.value, PartialImportError)
    assert caught.value.report.provenance_kept == 2
    assert any("2 number(s) already bound" in w for w in caught.value.report.warnings)
    assert last_audit(store)["provenance_kept"] == 2
