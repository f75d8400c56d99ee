"""An OSError on what the user pointed a command at (stdout redirected to a full disk) ends as
one error line and exit 1, not a traceback (ivr.cli.IvrGroup.invoke)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["report", "--format", "csv"], ["gdpr", "export",
                                                                  "+33199000010"]])
def test_a_full_disk_on_stdout_is_one_error_line(cfg_file: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", "from ivr.cli import main; main()",
                               "--config", str(cfg_file), *args], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("note: ")]
    assert done.returncode == 1, done.stderr
    assert lines == ["error: standard output: No space left on device"], done.stderr


def test_an_os_error_on_a_path_names_it_and_a_bug_is_not_hidden(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from ivr.cli import cli
    from ivr.records import privacy

    def denied(*args: object) -> None:
        raise PermissionError(13, "Permission denied", "/srv/exports/a.json")
    monkeypatch.setattr(privacy, "gdpr_export", denied)
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "gdpr", "export",
                                      "+33199000010"])
    lines = [line for line in result.output.splitlines() if not line.startswith("note: ")]
    assert (result.exit_code, lines) == (1, ["error: /srv/exports/a.json: Permission denied"])

    def bug(*args: object) -> None:
        raise KeyError("a programming error")
    monkeypatch.setattr(privacy, "gdpr_export", bug)
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "gdpr", "export",
                                      "+33199000010"])
    assert isinstance(result.exception, KeyError)  # still a traceback: only OSError is said
