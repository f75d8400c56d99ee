"""A real number met mid-file in a store keyed with the demo's key beside it (fiction numbers
only). Found in review: `ivr contacts import` kept the 1,000 rows of the first batch with no
audit row and said it had "created a new, empty store"; `ivr optout import` kept the numbers
before it and said the same. Now the import stops at that line with the partial import's
wording and audit row, and the opposition import says how many stay."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import shipped_config
from ivr.cli import cli

REAL = "+33612345678"


@pytest.fixture
def demo_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)  # the key goes beside the store
    return shipped_config(tmp_path, {"path": str(tmp_path / "d.db")})


def fiction(i: int) -> str:
    return f"+331990{i:05d}"


def test_contacts_import_stops_at_the_real_numbers_line(demo_keyed: Path, tmp_path: Path) -> None:
    rows = [fiction(i) for i in range(1500)]
    rows.insert(1200, REAL)  # line 1202: the header is line 1
    csv = tmp_path / "mix.csv"
    csv.write_text("number\n" + "\n".join(rows) + "\n")
    out = CliRunner().invoke(cli, ["--config", str(demo_keyed), "contacts", "import", str(csv),
                                    "--source", "l1", "--basis", "consent",
                                    "--acquired-on", "2026-11-02"])
    assert out.exit_code == 1, out.output
    said = out.output.strip()
    assert "\n" not in said and "line 1202: +33612345678 is a real number" in said, said
    assert "empty store" not in said and "up to line 1202" in said, said
    with sqlite3.connect(tmp_path / "d.db") as db:
        kept = db.execute("SELECT COUNT(*) FROM contacts").fetchone()[0]
        audit = [json.loads(d) for (d,) in db.execute(
            "SELECT detail FROM audit WHERE action = 'import'")]
    assert kept == 1200  # every line before it (a partial import), none from it on
    assert len(audit) == 1 and audit[0]["complete"] is False, audit


def test_optout_import_says_how_many_stay(demo_keyed: Path, tmp_path: Path) -> None:
    lst = tmp_path / "opp.txt"
    lst.write_text(f"{fiction(1)}\n{fiction(2)}\n{REAL}\n{fiction(3)}\n")
    out = CliRunner().invoke(cli, ["--config", str(demo_keyed), "optout", "import", str(lst),
                                    "--via", "post"])
    assert out.exit_code == 1, out.output
    said = out.output.strip().splitlines()[-1]
    assert said.startswith("error: opp.txt: stopped at line 3 (+33612345678 is a real number")
    assert "the 2 opposition(s) before it were added and stay" in said
    assert "empty store" not in said
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert db.execute("SELECT COUNT(*) FROM optouts").fetchone()[0] == 2


def test_an_interrupted_optout_import_says_how_many_stay(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM (the CLI's KeyboardInterrupt) printed only "Aborted!"."""
    from datetime import datetime, timezone

    from conftest import store_at
    from ivr.records.optout_import import OptoutImportStopped, import_optouts
    store = store_at(tmp_path / "s.db")
    real_add, calls = store.add_optout, []

    def add(number: str, *args: object, **kw: object) -> bool:
        calls.append(number)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_add(number, *args, **kw)  # type: ignore[arg-type]
    store.add_optout = add  # type: ignore[method-assign]
    lst = tmp_path / "opp.txt"
    lst.write_text("".join(f"{fiction(i)}\n" for i in range(5)))
    with pytest.raises(OptoutImportStopped, match=r"^opp.txt: stopped at line 3 \(interrupted\); "
                       r"the 2 opposition\(s\) before it were added and stay"):
        import_optouts(store, lst, via="post", default_region="FR",
                       now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert store.db.execute("SELECT COUNT(*) FROM optouts").fetchone()[0] == 2
