"""The CLI's audit rows name who ran the command, as the console's name its user: an import, a
list shared with another campaign, and a look-up of someone's proof of consent (which the
console audits as consent_viewed) wrote no actor, or no row at all."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import cli
from ivr.records.acting import cli_actor


def test_import_share_and_consent_show_name_the_cli_user(cfg_file: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    listed = tmp_path / "l.csv"
    listed.write_text("number,name\n01 62 00 00 10,A\n")

    def run(*args: str) -> None:
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), *args])
        assert result.exit_code == 0, result.output

    run("contacts", "import", str(listed), "--source", "l1", "--basis", "consent")
    run("contacts", "share", "--source", "l1", "--campaign", "other", "--basis", "consent")
    run("consent", "show", "01 62 00 00 10")
    with sqlite3.connect(tmp_path / "t.db") as db:
        rows = db.execute("SELECT action, actor FROM audit ORDER BY id").fetchall()
    actions = [a for a, _ in rows]
    assert "consent_viewed" in actions and len(actions) >= 3, rows
    assert cli_actor() == "alice (cli)"
    assert [(a, actor) for a, actor in rows if actor != "alice (cli)"] == []
