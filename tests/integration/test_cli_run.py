"""Issue 5 through the real `ivr` command: import, dry run, run with plain progress lines,
report formats, and Ctrl-C (graceful, then hang up)."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ivr.config import Config

from .conftest import itest_config_dict


def ivr(cfg_file: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["ivr", "--config", str(cfg_file), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture
def cfg_file(pbx_cfg: Config, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The test's config; parametrised "postgresql" (indirect), its store is `store.url`: a
    fresh database of the session's private cluster, the password in IVR_STORE_PASSWORD as
    an operator gives it to the `ivr` command."""
    data = itest_config_dict(tmp_path)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir  # already built and installed
    data["dialer"]["max_concurrent"] = 4
    if getattr(request, "param", "sqlite") == "postgresql":
        url = request.getfixturevalue("pg_url")
        mp: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        mp.delenv("PGPASSFILE", raising=False)
        mp.setenv("IVR_STORE_PASSWORD", request.getfixturevalue("pg_cluster").password())
        data["store"] = {"url": url, "optout_key_file": str(tmp_path / "optout.key")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def write_list(path: Path, suffixes: list[str], block: str = "03") -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name"])
        for i, s in enumerate(suffixes):
            w.writerow([f"01 99 00 {block} {s}", f"P{i}"])
        w.writerow(["not a number", "bad"])
    return path


@pytest.mark.parametrize("cfg_file", ["sqlite", "postgresql"], indirect=True)
def test_import_dry_run_run_report(cfg_file: Path, tmp_path: Path) -> None:
    lst = write_list(tmp_path / "list.csv", ["10", "20", "70"])
    out = ivr(cfg_file, "contacts", "import", str(lst), "--source", "adherents",
              "--basis", "member_file")
    assert out.returncode == 0, out.stderr
    assert "rejected line 5" in out.stderr

    dry = ivr(cfg_file, "run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("call     +331990003") == 3
    assert not (tmp_path / "itest.db").exists() or sqlite3.connect(
        tmp_path / "itest.db").execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0

    run = ivr(cfg_file, "run")
    assert run.returncode == 0, run.stderr
    assert "progress: in_flight=" in run.stdout  # not a terminal: plain lines
    assert "run finished: 4 call(s) placed" in run.stdout  # busy retried once (max 2)

    report = json.loads(ivr(cfg_file, "report", "--format", "json").stdout)
    assert report["outcomes"] == {"message_played": 1, "declined": 1, "busy": 2}
    assert report["contacts"]["done"] == 2 and report["contacts"]["exhausted"] == 1
    assert report["attempts"] == 4

    rows = list(csv.DictReader(io.StringIO(ivr(cfg_file, "report", "--format", "csv").stdout)))
    assert len(rows) == 4 and {r["source"] for r in rows} == {"adherents"}

    again = ivr(cfg_file, "run")
    assert "0 call(s) placed" in again.stdout and "all done" in again.stdout


def test_run_refuses_a_list_without_provenance_basis_or_scraped(cfg_file: Path,
                                                                 tmp_path: Path) -> None:
    lst = write_list(tmp_path / "list.csv", ["10"], block="04")
    for source, basis in (("web", "scraped from the web"), ("scraped from leboncoin", "consent"),
                          ("adherents", None)):
        refused = ivr(cfg_file, "contacts", "import", str(lst), "--source", source,
                      *(("--basis", basis) if basis else ()))
        assert refused.returncode == 1 and refused.stderr.startswith("error:")
        assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "itest.db").exists() or not sqlite3.connect(
        tmp_path / "itest.db").execute("SELECT * FROM contacts").fetchall()
    # A list stored before the import checked names (an older version): the run refuses it.
    assert ivr(cfg_file, "contacts", "import", str(lst), "--source", "adherents",
               "--basis", "member_file").returncode == 0
    with sqlite3.connect(tmp_path / "itest.db") as db:
        db.execute("UPDATE contacts SET source = 'scraped from leboncoin'")
        # the provenance a run checks is the list's binding to its campaign (schema 5)
        db.execute("UPDATE campaign_contacts SET source = 'scraped from leboncoin'")
    run = ivr(cfg_file, "run")
    assert run.returncode == 1
    # The preflight warnings come first (every run prints them), then the one error line.
    *warnings, error = run.stderr.strip().splitlines()
    assert error.startswith("error:") and "scraping origin" in error
    assert all(w.startswith("warning ") for w in warnings)


def test_ctrl_c_stops_new_calls_then_hangs_up(cfg_file: Path, tmp_path: Path) -> None:
    # 8 silent callees (30) and max_concurrent 4: 4 in flight when Ctrl-C arrives.
    with (tmp_path / "silent.csv").open("w") as fh:
        fh.write("number\n" + "".join(f"+33199005{i}30\n" for i in range(8)))
    assert ivr(cfg_file, "contacts", "import", str(tmp_path / "silent.csv"),
               "--source", "s", "--basis", "consent").returncode == 0
    proc = subprocess.Popen(["ivr", "--config", str(cfg_file), "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    db = tmp_path / "itest.db"

    def calls() -> list[tuple]:
        try:
            return sqlite3.connect(db).execute("SELECT outcome FROM calls").fetchall()
        except sqlite3.Error:
            return []
    deadline = time.monotonic() + 30
    while len(calls()) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)          # 1st: no new calls
    time.sleep(2)
    assert len(calls()) == 4
    proc.send_signal(signal.SIGINT)          # 2nd: hang up the calls in flight
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "run operator" in out
    outcomes = [o for (o,) in calls()]
    assert len(outcomes) == 4 and all(o is not None for o in outcomes)
    # Hung up by the run, not by the callees (still in the intro): error, retried later
    # (README: calls the run hangs up itself), so their 4 contacts stay pending with the 4
    # never called.
    stages = sqlite3.connect(db).execute("SELECT outcome, stage FROM calls").fetchall()
    assert all(o == "error" and (st or "").startswith("hard-stop") for o, st in stages), stages
    pending = sqlite3.connect(db).execute(
        "SELECT COUNT(*) FROM contacts WHERE status = 'pending'").fetchone()[0]
    assert pending == 8
