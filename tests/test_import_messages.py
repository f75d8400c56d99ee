"""What a contact import says: a basis the check would warn about, at the import, in the
check's words; after a fatal error part-way, the lines rejected before it and exact counts;
and empty cells past the header are not a reason to reject a line."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import cli
from ivr.compliance.preflight import check_sources
from ivr.errors import ImportFileError
from ivr.records import contacts
from ivr.records.contacts import import_csv
from ivr.store import Store

from conftest import sqlite_only

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
BROKEN = ("number,name\nbad,x\n06 12 34 56 78,a\n06 12 34 56 79,b\n06 12 34 56 80,c\n"
          '"06 12 34 56 81,open\n06 12 34 56 82,z\n')


def run(store: Store, path: Path, basis: str = "consent") -> contacts.ImportReport:
    return import_csv(store, path, campaign="c1", source="L", basis=basis,
                      acquired_on="2026-01-01", default_region="FR", now=NOW)


@sqlite_only
def test_an_unknown_basis_is_warned_at_the_import_in_the_checks_words(
        store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("number\n06 12 34 56 78\n")
    (warning,) = [v.message for v in check_sources(
        [{"source": "L", "basis": "adhesion 2019", "acquired_on": "2026-01-01"}])]
    assert run(store, path, basis="adhesion 2019").warnings == [warning]
    assert "basis 'adhesion 2019' is not one of" in warning
    # the binding keeps its first basis (its provenance), and the re-import says so
    assert run(store, path, basis="consent").warnings == [
        "1 number(s) already bound to campaign 'c1' with another source/basis were left as "
        "they were (first: L/adhesion 2019): a number keeps the list and basis it was first "
        "bound with in a campaign"]


@sqlite_only
@pytest.mark.parametrize(("typo", "meant"), [("concent", "consent"), ("consnet", "consent"),
                                             ("Member File", "member_file"),
                                             ("rented-file", "rented_file")])
def test_a_basis_typo_is_refused_before_any_line_as_it_could_never_be_corrected(
        store: Store, tmp_path: Path, typo: str, meant: str) -> None:
    """Before: taken with a warning, and the binding kept it for good (an import of the same
    list with the right basis leaves a number's first provenance as it was)."""
    path = tmp_path / "list.csv"
    path.write_text("number\n06 12 34 56 78\n")
    with pytest.raises(ImportFileError) as err:
        run(store, path, basis=typo)
    assert f"did you mean {meant}? Give the basis {meant}" in str(err.value)
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 0  # type: ignore[index]
    assert run(store, path, basis=meant).added == 1


def test_a_fatal_error_part_way_keeps_the_rejects_and_says_what_was_imported(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    path = tmp_path / "list.csv"
    path.write_text(BROKEN)
    with pytest.raises(ImportFileError) as err:
        run(store, path)
    assert str(err.value) == (
        "list.csv line 6: a quote opens a field that runs on to line 7: close or remove the "
        "quote (a cell cannot hold a line break); the lines before it were imported (up to "
        "line 5), but for the rejected ones: 3 added, 0 merged, 0 unchanged, 0 on the "
        "opposition list (never called), 1 rejected; nothing from there on: fix the file and "
        "import it again (the rows imported are kept)")
    report = getattr(err.value, "report")
    assert report.rejected == [(2, "'bad': not a valid phone number: write it in national "
                                   "(06 12 34 56 78) or international (+33 6 12 34 56 78) form")]
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 3  # type: ignore[index]


def test_the_command_lists_those_rejects_before_the_error(
        cfg_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    path = tmp_path / "list.csv"
    path.write_text(BROKEN)
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "contacts", "import",
                                      str(path), "--source", "L", "--basis", "adhesion",
                                      "--acquired-on", "2025-01-15"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("rejected line 2: 'bad': not a valid phone number")
    assert lines[1].startswith("warning: contact list 'L' basis 'adhesion' is not one of")
    assert "1 rejected; nothing from there on" in lines[2]
    assert lines[2].endswith("(this command created a new store at "
                             f"{tmp_path / 't.db'}: check store.path)")  # not "empty"


@sqlite_only
def test_empty_cells_past_the_header_are_accepted(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("number,name,\n06 12 34 56 79,A,\n06 12 34 56 80,B\n06 12 34 56 81,C,,\n"
                    "06 12 34 56 82,D, , \n06 12 34 56 83,E,,x\n")
    report = run(store, path)
    assert (report.added, report.rejected) == (4, [
        (6, "4 fields where the header has 3: check the quoting and the delimiter")])
