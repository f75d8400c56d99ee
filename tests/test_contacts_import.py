"""Contact list import: numbers, provenance, merging, opposition list, encodings, errors, scale."""
from __future__ import annotations

import csv
import functools
import json
import os
import time
import tracemalloc
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, sqlite_only
from opposition_forms import ACCEPTED, REFUSED

BAD_REASON = ("'bad': not a valid phone number: write it in national (06 12 34 56 78) or "
              "international (+33 6 12 34 56 78) form")

from ivr import numbers
from ivr.records import contacts, csv_read
from ivr.records.contacts import LATIN1_WARNING, ImportReport, e164, import_csv, import_optouts
from ivr.compliance.preflight import check_sources
from ivr.errors import ImportFileError, IvrError
from ivr.records.privacy import normalise_number
from ivr.store.sqlite import Store

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=2)


def write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def run(store: Store, path: Path, *, source: str = "list-a", basis: str | None = "consent",
        acquired_on: str | None = "2025-01-15", now: datetime = NOW) -> ImportReport:
    return import_csv(store, path, campaign="c1", source=source, basis=basis,
                      acquired_on=acquired_on, default_region="FR", now=now)


def rows(store: Store) -> list[dict[str, Any]]:
    return store.q("SELECT * FROM contacts ORDER BY id")


def by_number(store: Store) -> dict[str, dict[str, Any]]:
    return {r["number"]: r for r in rows(store)}


# -- numbers ----------------------------------------------------------------------------------
def test_numbers_are_normalised_to_e164(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number\n01 99 00 00 10\n+33 1 99 00 00 11\n0033199000012\n"
                           "06.12.34.56.78\n")
    report = run(store, path)
    assert report.added == 4 and report.rejected == []
    assert [r["number"] for r in rows(store)] == [
        "+33199000010", "+33199000011", "+33199000012", "+33612345678"]


def test_the_three_spellings_of_one_number_are_one_contact(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number\n01 99 00 00 10\n+33 1 99 00 00 10\n0033199000010\n")
    report = run(store, path)
    assert (report.added, report.merged, report.duplicates) == (1, 2, 2)
    assert [r["number"] for r in rows(store)] == ["+33199000010"]


def test_default_region_decides_national_numbers() -> None:
    assert e164("01 99 00 00 10", "FR") == "+33199000010"
    assert e164("020 7946 0018", "GB") == "+442079460018"
    assert e164("020 7946 0018", "FR") is None


def test_rejected_rows_have_line_numbers_and_valid_rows_still_import(
        store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, (
        "number,name,timezone\n"             # 1
        "01 99 00 00 10,Alice,\n"            # 2
        "12345,Bob,\n"                        # 3
        ",Nobody,\n"                          # 4
        "\n"                                  # 5 blank: skipped, not rejected
        "01 99 00 00 11,Carl,Mars/Olympus\n"  # 6
        "01 99 00 00 12,Dan,,surplus\n"       # 7
        '01 99 00 00 13,"Eve, quoted",\n'      # 8
        "not a number,Fay,\n"                 # 9
        "01 99 00 00 14,Gus,Indian/Reunion\n"  # 10
        '999,"Hal",\n'                        # 11
    ))
    report = run(store, path)
    assert report.rejected == [
        (3, "'12345': not a valid phone number: check the digits and the country code"),
        (4, "no number"),
        (6, "time zone 'Mars/Olympus' is unknown: use an IANA name such as Europe/Paris"),
        (7, "4 fields where the header has 3: check the quoting and the delimiter"),
        (9, "'not a number': not a valid phone number: write it in national (06 12 34 56 78) "
            "or international (+33 6 12 34 56 78) form"),
        (11, "'999': not a valid phone number: check the digits and the country code"),
    ]
    assert report.rejected_total == 6
    found = by_number(store)
    assert sorted(found) == ["+33199000010", "+33199000013", "+33199000014"]
    assert found["+33199000013"]["name"] == "Eve, quoted"
    assert found["+33199000014"]["timezone"] == "Indian/Reunion"
    assert report.added == 3


def test_rejections_beyond_the_cap_are_counted_not_listed(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "MAX_LISTED_REJECTS", 3)
    path = write(tmp_path, "number\n" + "bad\n" * 5 + "01 99 00 00 10\n")
    report = run(store, path)
    assert [line for line, _ in report.rejected] == [2, 3, 4]
    assert report.rejected_total == 5 and report.added == 1
    assert any("more than 3 lines rejected" in w for w in report.warnings)
    assert "5 rejected" in report.summary()


# -- header, columns, delimiter -------------------------------------------------------------
def test_header_is_matched_case_insensitively_and_extra_columns_are_kept(
        store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, " Number ,NAME, TimeZone ,Ville,Code Postal\n"
                           "01 99 00 00 10,Alice,Europe/Paris,Paris,75001\n")
    run(store, path)
    (row,) = rows(store)
    assert (row["number"], row["name"], row["timezone"]) == ("+33199000010", "Alice",
                                                             "Europe/Paris")
    assert json.loads(row["extra"]) == {"Ville": "Paris", "Code Postal": "75001"}


def test_semicolon_csv_from_french_excel(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number;name;ville\n01 99 00 00 10;Dupont, Jean;Lyon\n")
    report = run(store, path)
    (row,) = rows(store)
    assert report.added == 1
    assert row["name"] == "Dupont, Jean" and json.loads(row["extra"]) == {"ville": "Lyon"}


def test_a_semicolon_header_with_commas_in_its_names_is_split_on_semicolons(
        store: Store, tmp_path: Path) -> None:
    """Found in a hunt: as many commas as semicolons in the header picked ',' and the import
    said "no 'number' column" of a file that has one."""
    path = write(tmp_path, "Nom, prénom;Code postal, ville;number\n"
                           "Dupont, Jean;69001, Lyon;01 99 00 00 10\n")
    assert run(store, path).added == 1
    (row,) = rows(store)
    assert row["number"] == "+33199000010"
    assert json.loads(row["extra"]) == {"Nom, prénom": "Dupont, Jean",
                                        "Code postal, ville": "69001, Lyon"}


@sqlite_only  # refused before the store is touched
def test_missing_number_column_lists_the_columns_found(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "phone,name\n01 99 00 00 10,Alice\n")
    with pytest.raises(ImportFileError, match=r"no 'number' column \(columns found: 'phone', "
                                              r"'name'\)"):
        run(store, path)
    assert rows(store) == [] and store.q("SELECT * FROM audit") == []


@sqlite_only  # refused before the store is touched
def test_a_column_named_twice_is_refused(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number,Name,name\n01 99 00 00 10,a,b\n")
    with pytest.raises(ImportFileError, match="'name' appears twice"):
        run(store, path)
    assert rows(store) == []


def test_header_only_file_imports_nothing_without_error(store: Store, tmp_path: Path) -> None:
    report = run(store, write(tmp_path, "number,name\n"))
    assert (report.added, report.merged, report.unchanged, report.rejected) == (0, 0, 0, [])
    assert rows(store) == []


# -- provenance -------------------------------------------------------------------------------
def test_source_basis_and_acquisition_date_are_stored(store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, "number\n01 99 00 00 10\n"), source=" members-2025 ",
        basis="member_file", acquired_on="2025-02-01")
    (row,) = rows(store)
    assert (row["source"], row["basis"], row["acquired_on"]) == (
        "members-2025", "member_file", "2025-02-01")
    assert row["status"] == "pending"
    assert row["created_at"] == row["updated_at"] == "2025-03-04T09:30:00.000Z"


def test_a_list_without_its_date_stays_undated_and_says_so(store: Store, tmp_path: Path
                                                            ) -> None:
    """Not today's date: nobody stated it, so it proves nothing of when the list was acquired.
    `ivr check` warns of the undated list until the same list comes again with its date."""
    path = write(tmp_path, "number\n01 99 00 00 10\n")
    report = run(store, path, acquired_on=None)
    assert report.warnings == [contacts.NO_DATE]
    (row,) = rows(store)
    assert (row["acquired_on"], row["basis"]) == (None, "consent")
    assert [(s["source"], s["acquired_on"]) for s in store.pending_sources("c1")] == [
        ("list-a", None)]
    missing = [v.code for v in check_sources(store.pending_sources("c1"))]
    assert missing == ["acquired_on_missing"]
    # Another list's date does not stamp it; the same list and basis with its date does.
    run(store, path, source="list-b", acquired_on="2025-02-01")
    assert store.pending_sources("c1")[0]["acquired_on"] is None
    again = run(store, path, acquired_on="2025-02-01", now=NOW + timedelta(days=1))
    assert again.warnings == []
    assert store.pending_sources("c1")[0]["acquired_on"] == "2025-02-01"
    # A dated binding keeps its date.
    run(store, path, acquired_on="2025-02-20", now=NOW + timedelta(days=2))
    assert store.pending_sources("c1")[0]["acquired_on"] == "2025-02-01"


@sqlite_only  # refused before the store is touched
@pytest.mark.parametrize("source", ["", "   "])
def test_source_is_required(store: Store, tmp_path: Path, source: str) -> None:
    with pytest.raises(ImportFileError, match="a list needs its provenance: pass --source NAME"):
        run(store, write(tmp_path, "number\n01 99 00 00 10\n"), source=source)
    assert rows(store) == []


@sqlite_only  # refused before the store is touched
@pytest.mark.parametrize("value, message", [
    ("15/01/2025", "not a date: use YYYY-MM-DD"),
    ("2025-02-30", "not a date"),
    ("2025-03-09", "is in the future"),
])
def test_acquired_on_must_be_a_past_iso_date(store: Store, tmp_path: Path, value: str,
                                             message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        run(store, write(tmp_path, "number\n01 99 00 00 10\n"), acquired_on=value)
    assert rows(store) == []


def test_audit_row_records_the_import(store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, "number\n01 99 00 00 10\n01 99 00 00 10\nbad\n"))
    (audit,) = store.q("SELECT * FROM audit")
    assert (audit["action"], audit["subject_hash"], audit["at"]) == (
        "import", None, "2025-03-04T09:30:00.000Z")
    detail = json.loads(audit["detail"])
    assert detail == {"campaign": "c1", "source": "list-a", "basis": "consent", "acquired_on": "2025-01-15",
                      "file": "list.csv", "added": 1, "merged": 1, "duplicates": 1,
                      "unchanged": 0, "opted_out": 0, "rejected": 1, "complete": True}


# -- merging ---------------------------------------------------------------------------------
def test_in_file_duplicates_fill_blanks_and_never_overwrite(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number,name,timezone,ville,age\n"
                           "01 99 00 00 10,,,Paris,\n"
                           "+33199000010,Alice,Europe/Paris,Lyon,\n"
                           "0033199000010,Alicia,,,42\n")
    report = run(store, path)
    (row,) = rows(store)
    assert (row["name"], row["timezone"]) == ("Alice", "Europe/Paris")
    assert json.loads(row["extra"]) == {"ville": "Paris", "age": "42"}
    assert (report.added, report.merged, report.duplicates, report.unchanged) == (1, 2, 2, 0)
    assert "2 merged (0 existing updated, 2 repeated in the file)" in report.summary()


def test_existing_contact_is_merged_keeping_source_and_status(store: Store,
                                                               tmp_path: Path) -> None:
    run(store, write(tmp_path, "number,name,ville\n01 99 00 00 10,,Paris\n01 99 00 00 11,Bo,\n"),
        source="list-a", basis="member_file", acquired_on="2025-01-01")
    store.db.execute("UPDATE contacts SET status = 'done' WHERE number = '+33199000010'")
    before = by_number(store)
    second = write(tmp_path, "number,name,timezone,ville,age\n"
                             "01 99 00 00 10,Alice,Europe/Paris,Lyon,42\n"
                             "01 99 00 00 11,Bob,,,\n"
                             "01 99 00 00 12,Cy,,,\n", "second.csv")
    report = run(store, second, source="list-b", basis="rented_file",
                 acquired_on="2025-02-01", now=LATER)
    after = by_number(store)
    merged = after["+33199000010"]
    assert (merged["name"], merged["timezone"]) == ("Alice", "Europe/Paris")
    assert json.loads(merged["extra"]) == {"ville": "Paris", "age": "42"}
    assert (merged["source"], merged["basis"], merged["acquired_on"]) == (
        "list-a", "member_file", "2025-01-01")  # provenance of the first list stays
    assert merged["status"] == "done"  # not reset to pending
    assert merged["created_at"] == before["+33199000010"]["created_at"]
    assert merged["updated_at"] == "2025-03-06T09:30:00.000Z"
    assert after["+33199000011"] == before["+33199000011"]  # name set: nothing to fill
    assert after["+33199000012"]["source"] == "list-b"
    assert (report.added, report.merged, report.unchanged, report.duplicates) == (1, 1, 1, 0)


def test_basis_given_late_for_the_same_list_fills_it(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number\n01 99 00 00 10\n")
    add_contact(store, "+33199000010", at=NOW, source="list-a")  # imported before --basis
    report = run(store, path, basis="consent", now=LATER)
    assert rows(store)[0]["basis"] == "consent" and report.merged == 1


def test_duplicates_across_batches_count_like_within_one(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_optout("+33199000013", "post", NOW)
    text = ("number,name,ville\n01 99 00 00 10,,Paris\n01 99 00 00 11,Bo,\n01 99 00 00 12,,\n"
            "01 99 00 00 13,,\n0199000010,Al,Lyon\n0199000013,Di,\n0199000010,Alf,\n")
    monkeypatch.setattr(contacts, "BATCH", 2)
    small = run(store, write(tmp_path, text))
    small_rows = rows(store)
    other = Store.memory()
    other.add_optout("+33199000013", "post", NOW)
    monkeypatch.setattr(contacts, "BATCH", 1000)
    whole = run(other, write(tmp_path, text, "again.csv"))
    assert [(r["number"], r["name"], r["extra"], r["status"]) for r in small_rows] == \
        [(r["number"], r["name"], r["extra"], r["status"]) for r in rows(other)]
    for report in (small, whole):
        assert (report.added, report.merged, report.duplicates, report.opted_out) == (4, 3, 3, 1)
    assert by_number(store)["+33199000010"]["name"] == "Al"
    assert json.loads(by_number(store)["+33199000010"]["extra"]) == {"ville": "Paris"}


# -- opposition list --------------------------------------------------------------------------
def test_opted_out_numbers_are_imported_but_never_callable(store: Store, tmp_path: Path) -> None:
    store.add_optout("+33199000011", "post", NOW)
    report = run(store, write(tmp_path, "number\n01 99 00 00 10\n01 99 00 00 11\n"))
    status = {n: r["status"] for n, r in by_number(store).items()}
    assert status == {"+33199000010": "pending", "+33199000011": "opted_out"}
    assert report.opted_out == 1 and report.added == 2
    pending = store.q("SELECT number FROM contacts WHERE status = 'pending'")
    assert pending == [{"number": "+33199000010"}]
    assert "1 on the opposition list" in report.summary()


def test_reimport_after_an_optout_marks_the_existing_contact(store: Store,
                                                             tmp_path: Path) -> None:
    path = write(tmp_path, "number\n01 99 00 00 10\n")
    run(store, path)
    # Opposition recorded by a path that does not touch contacts (e.g. hash-only after erasure).
    store.db.execute("INSERT INTO optouts (number_hash, number, via, created_at) "
                     "VALUES (?, NULL, 'post', 'x')", (store.number_hash("+33199000010"),))
    report = run(store, path, now=LATER)
    assert rows(store)[0]["status"] == "opted_out"
    assert (report.opted_out, report.merged) == (1, 1)


# -- idempotency ------------------------------------------------------------------------------
def test_importing_the_same_file_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    store.add_optout("+33199000012", "post", NOW)
    path = write(tmp_path, "number,name,timezone,ville\n01 99 00 00 10,Alice,Europe/Paris,Paris\n"
                           "01 99 00 00 11,,,\n01 99 00 00 12,Opp,,\nbad,,,\n")
    first = run(store, path, acquired_on=None)
    before = rows(store)
    second = run(store, path, acquired_on=None, now=LATER)
    assert rows(store) == before  # updated_at and the undated acquired_on included
    assert (first.added, first.opted_out) == (3, 1)
    assert (second.added, second.merged, second.unchanged, second.opted_out) == (0, 0, 3, 1)
    assert second.rejected == first.rejected == [(5, BAD_REASON)]
    assert len(store.q("SELECT * FROM audit WHERE action = 'import'")) == 2


def test_reimporting_a_file_with_duplicates_changes_nothing(store: Store,
                                                            tmp_path: Path) -> None:
    path = write(tmp_path, "number,name\n01 99 00 00 10,\n0199000010,Al\n")
    run(store, path)
    before = rows(store)
    second = run(store, path, now=LATER)
    assert rows(store) == before
    assert (second.added, second.unchanged, second.duplicates, second.merged) == (0, 1, 1, 1)


# -- encodings and bad files ------------------------------------------------------------------
def test_utf8_bom_is_accepted(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffnumber,name\n01 99 00 00 10,Élodie Müller\n".encode("utf-8"))
    report = run(store, path)
    assert rows(store)[0]["name"] == "Élodie Müller" and report.warnings == []


def test_latin1_file_is_read_with_a_warning(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number,name\n01 99 00 00 10,Élodie Françoise\n".encode("latin-1"))
    report = run(store, path)
    assert rows(store)[0]["name"] == "Élodie Françoise"
    assert report.warnings == [LATIN1_WARNING]


def test_windows_1252_punctuation_survives(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "number,name\n01 99 00 00 10,L’Hôte Œdipe\n".encode("cp1252"))
    report = run(store, path)
    assert rows(store)[0]["name"] == "L’Hôte Œdipe" and report.warnings == [LATIN1_WARNING]


@sqlite_only
@pytest.mark.parametrize("utf8_first", [False, True])  # the stray byte before or after them
def test_a_utf8_file_with_one_stray_byte_is_refused_naming_its_line(
        store: Store, tmp_path: Path, utf8_first: bool) -> None:
    """Before: read as Windows-1252 with a warning naming no line, every other accent stored
    as two letters ('Élodie' as 'Ã‰lodie')."""
    lines = [b"01 99 00 00 10,\xc3\x89lodie\n", b"01 99 00 00 11,Al\xffice\n"]
    path = write(tmp_path, b"number,name\n" + b"".join(lines if utf8_first else lines[::-1]))
    with pytest.raises(ImportFileError) as err:
        run(store, path)
    line = 3 if utf8_first else 2
    assert str(err.value) == (f"list.csv line {line}: a byte that is not UTF-8, in a file whose "
                              "other accents are UTF-8: fix that line (or save the file again "
                              "as 'CSV UTF-8'); nothing was imported")
    assert rows(store) == []


def test_invalid_utf8_late_in_a_big_file_is_still_detected(store: Store, tmp_path: Path) -> None:
    # past the first chunk of the encoding pass: long lines, few numbers (60,000 short ones
    # were 0.9 MB, inside it, and cost 25-29 s in CI)
    body = "".join(f"06{10000000 + i:08d},nom {'x' * 120}\n" for i in range(8_000))
    assert len(body) > csv_read.CHUNK
    path = write(tmp_path, ("number,name\n" + body).encode() + "06 99 99 99 99,Hélène\n"
                 .encode("latin-1"))
    report = run(store, path)
    assert report.warnings == [LATIN1_WARNING]
    assert by_number(store)["+33699999999"]["name"] == "Hélène"


def test_a_bom_before_text_that_is_not_utf8_is_refused(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfnumber;name\n0199000050;H\xe9l\xe8ne\n")
    with pytest.raises(ImportFileError) as err:
        run(store, path)
    assert str(err.value) == ("list.csv starts with a UTF-8 mark (BOM) but is not UTF-8 past "
                              "it: save it again as 'CSV UTF-8'")
    assert rows(store) == []


def test_a_number_in_scientific_notation_is_blamed_on_the_spreadsheet(
        store: Store, tmp_path: Path) -> None:
    report = run(store, write(tmp_path, "number;name\n3.3612345678E+10;a\n3,36123E+10;b\n"))
    reason = ("a spreadsheet turned the number into scientific notation (its leading 0 or + is "
              "lost, maybe digits too): format the column as text and export the list again")
    assert report.rejected == [(2, f"'3.3612345678E+10': {reason}"),
                               (3, f"'3,36123E+10': {reason}")]


def test_a_field_over_128_kb_names_its_line(store: Store, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "number,name\n0199000021," + "x" * 200_000 + "\n0199000022,b\n")
    with pytest.raises(ImportFileError) as err:
        run(store, path)
    assert str(err.value) == ("list.csv line 2: a field is over 128 KB: shorten it (no name, "
                              "number or column needs that much)")
    assert rows(store) == []
    monkeypatch.setattr(contacts, "BATCH", 1)  # met part-way: the lines before it are kept
    path = write(tmp_path, "number,name\n0199000020,a\n0199000021," + "x" * 200_000 + "\n")
    with pytest.raises(ImportFileError, match="^list.csv line 3: a field is over 128 KB: .*; "
                                              "the lines before it were imported"):
        run(store, path)
    assert [r["number"] for r in rows(store)] == ["+33199000020"]


def test_a_utf8_sequence_cut_at_the_end_means_not_utf8(store: Store, tmp_path: Path) -> None:
    report = run(store, write(tmp_path, b"number,name\n01 99 00 00 10,Ren\xc3"))
    assert report.warnings == [LATIN1_WARNING] and rows(store)[0]["name"] == "RenÃ"


@sqlite_only  # refused before the store is touched
@pytest.mark.parametrize("content", [b"", b"\n\n  \n", "\ufeff".encode()])
def test_empty_file_is_refused(store: Store, tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ImportFileError, match="is empty: its first line must be a header"):
        run(store, write(tmp_path, content))
    assert rows(store) == [] and store.q("SELECT * FROM audit") == []


@sqlite_only  # refused before the store is touched
@pytest.mark.parametrize("content, message", [
    (b"number\n01 99 00 00 10\n\x00\x01\x02\x03", r"not CSV text \(NUL byte at offset 22\)"),
    (b"PK\x03\x04\x14\x00\x06\x00", "is a spreadsheet"),
    ("number\n0199000010\n".encode("utf-16"), "is UTF-16 text"),
])
def test_binary_files_are_refused_before_any_write(store: Store, tmp_path: Path,
                                                   content: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        run(store, write(tmp_path, content))
    assert rows(store) == []


@sqlite_only  # refused before the store is touched
def test_missing_file_and_folder_are_reported(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="file not found"):
        run(store, tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match="is a folder"):
        run(store, tmp_path)


@sqlite_only  # refused before the store is touched
def test_a_pipe_is_refused_not_read_as_an_empty_file(store: Store, tmp_path: Path) -> None:
    """`cat list.csv | ivr contacts import /dev/stdin`: the encoding pass took the pipe's lines
    and the import said "is empty"."""
    fifo = tmp_path / "list.csv"
    os.mkfifo(fifo)
    for importing in (lambda: run(store, fifo),
                      lambda: import_optouts(store, fifo, via="post", default_region="FR",
                                             now=NOW)):
        with pytest.raises(ImportFileError, match="is a pipe or a device, not a file: save the "
                                                  "list to a file first"):
            importing()
    assert rows(store) == []


def test_broken_quoting_before_any_batch_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, 'number,name\n01 99 00 00 10,a\n01 99 00 00 11,"unclosed\n'
                 + "x" * 140_000 + "\n")
    with pytest.raises(ImportFileError, match="line 3: a quote opens a field that runs on to "
                                              "line 4 and past 128 KB: close or remove"):
        run(store, path)
    assert rows(store) == [] and store.q("SELECT * FROM audit") == []


def _numbered(n: int) -> list[str]:
    return [f"+3319{i:07d},Name {i}" for i in range(n)]


def test_a_stray_quote_refuses_the_file_instead_of_swallowing_it(
        store: Store, tmp_path: Path) -> None:
    lines = _numbered(2000)
    lines[4] = '+33190000004,"Dupont'  # line 6: its field would run on to the end of the file
    path = write(tmp_path, "number,name\n" + "\n".join(lines) + "\n")
    with pytest.raises(ImportFileError) as err:
        run(store, path)
    assert str(err.value) == ("list.csv line 6: a quote opens a field that runs on to line "
                              "2001: close or remove the quote (a cell cannot hold a line "
                              "break)")
    assert rows(store) == [] and store.q("SELECT * FROM audit") == []


def test_a_quoted_line_break_is_refused_even_when_the_quote_closes(
        store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, 'number,name\n0199000010,a\n0199000011,"Du\npont"\n0199000012,c\n')
    with pytest.raises(ImportFileError, match="list.csv line 3: a quote opens a field that runs "
                                              "on to line 4: close or remove the quote \\(a cell "
                                              "cannot hold a line break\\)$"):
        run(store, path)
    assert rows(store) == []


def test_a_stray_quote_after_some_batches_keeps_exactly_the_lines_before_it(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    lines = _numbered(9)
    lines[4] = '+33190000004,"Dupont'  # line 6; lines 2-5 are before it, 7-10 after
    path = write(tmp_path, "number,name\n" + "\n".join(lines) + "\n")
    with pytest.raises(ImportFileError, match="line 6: a quote opens a field that runs on to "
                                              "line 10: close or remove the quote \\(a cell "
                                              "cannot hold a line break\\); the lines "
                                              "before it were imported"):
        run(store, path)
    assert [r["number"] for r in rows(store)] == [f"+3319{i:07d}" for i in range(4)]
    detail = json.loads(store.one("SELECT detail FROM audit")["detail"])  # type: ignore[index]
    assert (detail["complete"], detail["added"], detail["last_line_read"]) == (False, 4, 5)
    lines[4] = "+33190000004,Dupont"
    report = run(store, write(tmp_path, "number,name\n" + "\n".join(lines) + "\n"),
                 now=LATER)
    assert (report.added, report.unchanged, report.rejected_total) == (5, 4, 0)


def test_optout_import_refuses_a_stray_quote(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, '0199000010\n"0199000011\n0199000012\n0199000013\n')
    with pytest.raises(ImportFileError, match="list.csv line 2: a quote opens a field that "
                                              "runs on to line 4: close or remove the quote"):
        import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert [r["number"] for r in store.q("SELECT number FROM optouts")] == ["+33199000010"]


def test_a_quote_left_open_on_the_last_line_is_refused_too(store: Store, tmp_path: Path) -> None:
    """The reader ends a field at the end of the file without a word: the last line's
    objection ("oui") was read into its name and the person queued to be called."""
    for end in ("\n", ""):
        path = write(tmp_path, 'number,name,Opposition\n0199000701,Ann,non\n'
                     '0199000702,"Bob,oui' + end)
        with pytest.raises(ImportFileError, match="^list.csv line 3: a quote opens a field that "
                                                  "is never closed: close or remove the quote"):
            run(store, path)
        assert rows(store) == []
    path = write(tmp_path, '0199000010\n"0199000011,0199000012\n')
    with pytest.raises(ImportFileError, match="line 2: a quote opens a field that is never "
                                              "closed"):
        import_optouts(store, path, via="post", default_region="FR", now=NOW)
    path = write(tmp_path, 'number,name\n0199000701,Ann\n0199000702,"Bob"')  # closed: kept
    assert run(store, path).added == 2


def test_fatal_error_after_some_batches_keeps_them_whole(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    path = write(tmp_path, "number,name\n01 99 00 00 10,a\n01 99 00 00 11,b\n01 99 00 00 12,c\n"
                           '01 99 00 00 13,"unclosed\n' + "x" * 140_000 + "\n")
    with pytest.raises(ImportFileError, match="line 5: .* the lines before it were imported"):
        run(store, path)
    assert [r["number"] for r in rows(store)] == ["+33199000010", "+33199000011",
                                                   "+33199000012"]
    detail = json.loads(store.one("SELECT detail FROM audit")["detail"])  # type: ignore[index]
    assert (detail["complete"], detail["added"], detail["last_line_read"]) == (False, 3, 4)
    # After the fix, importing again finishes the job without touching what is there.
    fixed = write(tmp_path, "number,name\n01 99 00 00 10,a\n01 99 00 00 11,b\n"
                            "01 99 00 00 12,c\n01 99 00 00 13,d\n")
    report = run(store, fixed, now=LATER)
    assert (report.added, report.unchanged) == (1, 3)


# -- scale ----------------------------------------------------------------------------------------
# Memory must not grow with the file: 20 batches of contacts.BATCH, past the one cache that
# grows with distinct numbers (numbers._overseas, bounded by its maxsize: 65,536 numbers, ~14
# MB once full). Its bound shrunk to 4,096 here, the import peaks at ~1.6 MB, and a leak of
# ~130 bytes a line fails 4 MiB (tried: 150 bytes a line peaked at 5.3 MB). The file once had
# 100,000 lines to go past the full cache: 150 s under tracemalloc in CI, for the same check.
SCALE_LINES = 20_000
OVERSEAS_CACHE_MAX = 4096


def test_a_large_file_streams_with_bounded_memory(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    n = SCALE_LINES
    assert n > 10 * contacts.BATCH and n > 4 * OVERSEAS_CACHE_MAX
    assert numbers._overseas.cache_info().maxsize == 65536  # the product's own bound
    monkeypatch.setattr(numbers, "_overseas", functools.lru_cache(maxsize=OVERSEAS_CACHE_MAX)(
        numbers._overseas.__wrapped__))
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("number,name,ville\n")
        for i in range(n):
            fh.write(f"06{10000000 + i:08d},Nom {i},Ville {i % 50}\n")
        fh.write("06 10 00 00 00,,\nbad,,\n")  # a duplicate of line 2 and a reject
    e164("0610000000", "FR")  # load phonenumbers' metadata outside the measurement
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = run(store, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert numbers._overseas.cache_info().currsize == OVERSEAS_CACHE_MAX  # it was full
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert (report.added, report.duplicates, report.rejected) == (
        n, 1, [(n + 3, BAD_REASON)])
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == n  # type: ignore[index]
    last = store.one("SELECT * FROM contacts WHERE number = ?", (f"+336{10000000 + n - 1:08d}",))
    assert last is not None and last["name"] == f"Nom {n - 1}"
    assert time.monotonic() - started < 300


# -- opposition list import -------------------------------------------------------------------
def test_import_optouts_from_a_plain_list(store: Store, tmp_path: Path) -> None:
    run(store, write(tmp_path, "number\n01 99 00 00 10\n"))
    path = write(tmp_path, "01 99 00 00 10\n+33 1 99 00 00 11\n\nnope\n0033199000011\n",
                 "optouts.txt")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert added == 2
    assert rejected == [(4, "'nope' is not a valid phone number: letters ('nope') that are not "
                            "a label such as 'Tél.': give the number alone")]
    assert store.is_opted_out("+33199000010") and store.is_opted_out("+33199000011")
    assert rows(store)[0]["status"] == "opted_out"
    assert store.one("SELECT via FROM optouts WHERE number = '+33199000011'") == {"via": "post"}


@pytest.mark.parametrize(("text", "added"), [
    ("+33199000012, +33199000013\n", ["+33199000012", "+33199000013"]),        # plain, commas
    ("01 99 00 00 21;01 99 00 00 22\n01 99 00 00 23\n",
     ["+33199000021", "+33199000022", "+33199000023"]),                        # plain, semicolons
    ("number\n01 99 00 00 31, 01 99 00 00 32\n", ["+33199000031", "+33199000032"]),  # past header
    ("number,name\n01 99 00 00 41,Jean Dupont\n", ["+33199000041"]),       # a named column
    # other cells that are not written as phone numbers are ignored, never opposed
    ("0199000051,123456789\n0199000052,412345678\n0199000053,75011\n0199000054,2026-01-15\n"
     "0199000055,15/01/2026\n0199000056,Dupont\n",
     [f"+3319900005{i}" for i in range(1, 7)]),
    ("number,name\n0199000061,Durand,612000111\n", ["+33199000061"]),
    # any other writing the opposition form reads is a second opposition too
    ("0199000071,'0199000072\n0199000073,(+33) 1 99 00 00 74\n0199000075,Tel: 01 99 00 00 76\n"
     "0199000077,33199000078\n0199000079,\uff10\uff11\uff19\uff19\uff10\uff10\uff10\uff10\uff18\uff10\n",
     sorted(f"+331990000{n}" for n in range(71, 81)))])
def test_every_number_on_an_opposition_line_is_added(
        store: Store, tmp_path: Path, text: str, added: list[str]) -> None:
    """Two numbers on one line are two oppositions: the second was silently dropped, and that
    person was called."""
    path = write(tmp_path, text, "optouts.csv")
    count, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert (count, rejected) == (len(added), [])
    assert sorted(r["number"] for r in store.q("SELECT number FROM optouts")) == added


def test_import_optouts_reads_numbers_as_the_opposition_form_does(
        store: Store, tmp_path: Path) -> None:
    texts = ["06\u00a012\u00a034\u00a056\u00a078", "abc0612345679", "0612345670 ext. 5",
             "0612345671';x", "06\u202f12\u202f34\u202f56\u202f72"]
    path = write(tmp_path, "\n".join(texts) + "\n", "optouts.txt")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert (added, [line for line, _ in rejected]) == (2, [2, 3, 4])
    assert store.is_opted_out("+33612345678") and store.is_opted_out("+33612345672")
    for line, text in enumerate(texts, start=1):  # the form refuses exactly the same lines
        with pytest.raises(IvrError) if line in (2, 3, 4) else nullcontext():
            normalise_number(text, "FR")


def test_import_optouts_reads_every_unambiguous_writing_of_a_number(
        store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join(text for text, _ in ACCEPTED) + "\n", "optouts.txt")
    added, rejected = import_optouts(store, path, via="post", default_region="FR", now=NOW)
    assert rejected == []
    expected = sorted({number for _, number in ACCEPTED})
    assert (added, sorted(r["number"] for r in store.q("SELECT number FROM optouts"))) == (
        len(expected), expected)


def test_import_optouts_says_why_a_line_is_refused(store: Store, tmp_path: Path) -> None:
    with (tmp_path / "optouts.csv").open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["number"], *([text] for text, _ in REFUSED)])
    added, rejected = import_optouts(store, tmp_path / "optouts.csv", via="post",
                                     default_region="FR", now=NOW)
    assert (added, [line for line, _ in rejected]) == (0, list(range(2, 2 + len(REFUSED))))
    for (_, why), (_, reason) in zip(rejected, REFUSED):
        assert "is not a valid phone number: " in why and reason in why, why
    assert store.q("SELECT * FROM optouts") == []


def test_contact_import_drops_copy_pastes_invisible_characters(store: Store,
                                                                tmp_path: Path) -> None:
    path = write(tmp_path, "number\n+33612345678\u200b\n\u200e06 12 34 56 79\n"
                           "06 12 34 56 70\ufeff\nTél. 06 12 34 56 71\n")
    report = run(store, path)
    assert sorted(by_number(store)) == ["+33612345670", "+33612345678", "+33612345679"]
    assert [line for line, _ in report.rejected] == [5]  # still strict: no label in a call list


def test_import_optouts_from_a_csv(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "name;Number\nA;01 99 00 00 10\nB;\nC;06 12 34 56 78\n",
                 "optouts.csv")
    added, rejected = import_optouts(store, path, via="email", default_region="FR", now=NOW)
    assert (added, rejected) == (2, [(3, "no number")])
    assert store.is_opted_out("+33612345678")
    again = import_optouts(store, path, via="email", default_region="FR", now=NOW)
    assert again == (0, [(3, "no number")])


def test_import_optouts_refuses_a_file_without_numbers(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="neither a header with a 'number' column"):
        import_optouts(store, write(tmp_path, "phone\n0199000010\n"), via="post",
                       default_region="FR", now=NOW)
    with pytest.raises(ImportFileError, match="is empty"):
        import_optouts(store, write(tmp_path, ""), via="post", default_region="FR", now=NOW)
    assert store.q("SELECT * FROM optouts") == []


# -- provenance and callable numbers (issue 16 items 4 and 7) ---------------------------------
@pytest.mark.parametrize("basis", [None, "", "  "])
def test_an_import_without_a_basis_is_refused(store: Store, tmp_path: Path,
                                               basis: str | None) -> None:
    with pytest.raises(ImportFileError, match="acquisition basis: pass --basis"):
        run(store, write(tmp_path, "number\n01 99 00 00 10\n"), basis=basis)
    assert rows(store) == [] and store.q("SELECT * FROM audit") == []


@pytest.mark.parametrize(("source", "basis", "word"), [
    ("scraped from leboncoin", "member_file", "scrap"),
    ("Pages Jaunes Villeneuve", "consent", "pagesjaunes"),
    ("annuaire inversé 2024", "rented_file", "annuaire"),
    ("le-bon-coin", "consent", "leboncoin"),
    ("adherents", "scraped from the web", "internet"),
])
def test_a_scraped_list_is_refused_by_its_name_or_basis(
        store: Store, tmp_path: Path, source: str, basis: str, word: str) -> None:
    with pytest.raises(ImportFileError, match=word) as exc:
        run(store, write(tmp_path, "number\n01 99 00 00 10\n"), source=source, basis=basis)
    assert "\n" not in str(exc.value) and "CNIL" in str(exc.value)
    assert rows(store) == []


def test_numbers_that_may_not_be_called_are_rejected_with_the_reason(
        store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, 'number\n"0612345678,1"\n08 99 12 34 56\n3949\n+44 20 7946 0018\n'
                           "0596 30 12 34\n")
    report = run(store, path)
    assert report.rejected == [
        (2, "'0612345678,1': trailing characters after the number (',1'): remove the "
            "extension or suffix"),
        (3, "'08 99 12 34 56': premium-rate number: remove it from the list"),
        (4, "'3949': short number (service code): remove it from the list"),
        (5, "'+44 20 7946 0018': foreign number (+44): add GB to contacts.allow_countries "
            "to call it"),
    ]
    assert [r["number"] for r in rows(store)] == ["+596596301234"]


def test_allowed_countries_are_imported(store: Store, tmp_path: Path) -> None:
    report = import_csv(store, write(tmp_path, "number\n+44 20 7946 0018\n"), campaign="c1",
                        source="s", basis="consent", acquired_on=None, default_region="FR", now=NOW,
                        allow_countries=frozenset({"GB"}))
    assert report.added == 1 and [r["number"] for r in rows(store)] == ["+442079460018"]
