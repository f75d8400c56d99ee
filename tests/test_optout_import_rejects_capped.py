"""`ivr optout import` of a file of garbage: the first MAX_LISTED_REJECTS rejected lines are
listed, the rest counted in one line, and none is held in memory (a million invalid lines cost
296 MB and printed a million lines). As `ivr contacts import`: exit 0, the valid numbers added."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from conftest import sqlite_only
from ivr.cli import cli
from ivr.records import contacts
from ivr.records.contacts import import_optouts

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)


def _file(tmp_path: Path, valid: int, invalid: int) -> Path:
    path = tmp_path / "optouts.csv"
    path.write_text("number\n" + "".join(f"+3314{i:07d}\n" for i in range(valid))
                    + "".join(f"not a number {i}\n" for i in range(invalid)))
    return path


def test_the_cli_lists_the_first_rejects_and_counts_the_rest(cfg_file: Path, tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    monkeypatch.setattr(contacts, "MAX_LISTED_REJECTS", 3)
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(cfg_file), "optout", "import", str(_file(tmp_path, 2, 10))])
    # A rejected line may be a person who objected: a failure a script sees (they were 0).
    assert result.exit_code == 1, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("note: ")]
    assert lines[0].startswith("rejected line 4: 'not a number 0' is not a valid phone number")
    assert [ln.split(":")[0] for ln in lines] == [
        "rejected line 4", "rejected line 5", "rejected line 6",
        "… and 7 more rejected line(s), not listed", "error"]
    assert lines[-1] == ("error: 10 line(s) rejected: those are NOT on the opposition list: fix "
                         "them and import them again (the numbers added stay)")
    assert result.stdout == "2 number(s) added to the opposition list\n"


def test_a_small_file_lists_every_reject(cfg_file: Path, tmp_path: Path) -> None:
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(cfg_file), "optout", "import", str(_file(tmp_path, 1, 2))])
    assert result.exit_code == 1
    assert [ln.split(":")[0] for ln in result.stderr.splitlines()
            if not ln.startswith("note: ")] == ["rejected line 3", "rejected line 4", "error"]
    clean = CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(cfg_file), "optout", "import", str(_file(tmp_path, 3, 0))])
    assert clean.exit_code == 0 and "error" not in clean.stderr


@sqlite_only
def test_rejects_handed_over_are_not_kept(store: Any, tmp_path: Path) -> None:
    """The console keeps the list (its rejects CSV holds them all); the CLI streams them."""
    seen: list[int] = []
    added, kept = import_optouts(store, _file(tmp_path, 2, 5), via="post", default_region="FR",
                                 now=NOW, on_reject=lambda line, why: seen.append(line))
    assert (added, kept, seen) == (2, [], [4, 5, 6, 7, 8])
    added, kept = import_optouts(store, _file(tmp_path, 2, 5), via="post", default_region="FR",
                                 now=NOW)
    assert (added, [line for line, _ in kept]) == (0, [4, 5, 6, 7, 8])
