"""An interrupted `ivr contacts import` (Ctrl-C, SIGTERM) ends as a file error part-way does:
the batches written are kept whole, the audit row says complete false with the counts, and one
error line says what was kept and how to finish; never a silent death or a bare "Aborted!"."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend
from ivr import cli_guard
from ivr.errors import ImportFileError
from ivr.records import contacts
from ivr.records.contacts import PartialImportError, import_csv
from ivr.records.interrupts import signals_held

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)


def _csv(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "list.csv"
    path.write_text("number,name\n" + "".join(f"+331990{i:05d},n{i}\n" for i in range(count)))
    return path


def _import(store: Any, path: Path) -> contacts.ImportReport:
    return import_csv(store, path, campaign="c1", source="list-a", basis="consent",
                      acquired_on="2025-01-15", default_region="FR", now=NOW)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Ctrl-C while line `at` is being read."""
    add = contacts._Importer.add

    def add_or_stop(self: Any, line: int, cells: list[str]) -> None:
        if line == at:
            raise KeyboardInterrupt
        add(self, line, cells)
    monkeypatch.setattr(contacts._Importer, "add", add_or_stop)


def _audits(store: Any) -> list[dict[str, Any]]:
    return [json.loads(r["detail"]) for r in store.q("SELECT detail FROM audit "
                                                      "WHERE action = 'import' ORDER BY id")]


def test_an_interrupt_after_some_batches_keeps_them_audits_and_says_so(
        store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "BATCH", 2)
    _interrupt_at(monkeypatch, 8)  # lines 2-7 read: 6 numbers
    with pytest.raises(PartialImportError, match="^import of list.csv interrupted at line 8: "
                                                 "the lines before it were imported, but for "
                                                 "the rejected ones: 6 added.*import the same "
                                                 "file again to finish it") as err:
        _import(store, _csv(tmp_path, 20))
    assert "\n" not in str(err.value)
    assert store.q("SELECT count(*) AS n FROM contacts")[0]["n"] == 6
    detail, = _audits(store)
    assert (detail["complete"], detail["added"], detail["last_line_read"]) == (False, 6, 8)
    monkeypatch.undo()
    report = _import(store, _csv(tmp_path, 20))  # importing again finishes it
    assert (report.added, report.unchanged) == (14, 6)
    assert [d["complete"] for d in _audits(store)] == [False, True]


def test_an_interrupt_inside_a_batch_rolls_it_back_then_writes_it_whole(
        store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the middle of a batch's transaction: the batch is rolled back and its counts
    with it, then written again before the audit row, which matches the store."""
    monkeypatch.setattr(contacts, "BATCH", 3)
    bind, calls = store.bind_contacts, []

    def bind_or_stop(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        bind(*args, **kwargs)
    monkeypatch.setattr(store, "bind_contacts", bind_or_stop)
    with pytest.raises(PartialImportError, match="interrupted at line 7: .*6 added"):
        _import(store, _csv(tmp_path, 20))
    assert store.q("SELECT count(*) AS n FROM contacts")[0]["n"] == 6
    assert store.q("SELECT count(*) AS n FROM campaign_contacts")[0]["n"] == 6
    detail, = _audits(store)
    assert (detail["complete"], detail["added"]) == (False, 6)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_a_batch_commits_is_delivered_after_it_and_counted_with_it(
        store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals) -> None:
    """The signal lands once the batch's COMMIT is done but before the import saw it end (as
    while PostgreSQL's reply was awaited): the rows are kept, so they must be counted."""
    monkeypatch.setattr(contacts, "BATCH", 2)
    transaction, commits = store.transaction, []

    @contextlib.contextmanager
    def committing_then_signalled() -> Iterator[None]:
        with transaction():
            yield
        commits.append(1)
        if len(commits) == 3:
            os.kill(os.getpid(), sig)
    monkeypatch.setattr(store, "transaction", committing_then_signalled)
    previous = signal.signal(signal.SIGTERM, cli_guard._sigterm)  # as `ivr` sets it
    try:
        with pytest.raises(PartialImportError, match=r"interrupted at line \d+: .*6 added"):
            _import(store, _csv(tmp_path, 20))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert store.q("SELECT count(*) AS n FROM contacts")[0]["n"] == 6
    detail, = _audits(store)
    assert (detail["complete"], detail["added"], detail["last_line_read"]) == (False, 6, 7)


def test_a_signal_during_the_partial_imports_audit_still_ends_as_a_partial_import(
        store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C while the stopping import writes its audit row: the row is written and
    the error still says what was kept (it said "nothing was imported")."""
    monkeypatch.setattr(contacts, "BATCH", 2)
    _interrupt_at(monkeypatch, 8)
    audit = store.audit

    def audit_then_signal(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return audit(*args, **kwargs)
    monkeypatch.setattr(store, "audit", audit_then_signal)
    with pytest.raises(PartialImportError, match="interrupted at line 8: .*6 added"):
        _import(store, _csv(tmp_path, 20))
    detail, = _audits(store)
    assert (detail["complete"], detail["added"]) == (False, 6)


def test_a_held_signal_goes_after_the_block_a_second_one_at_once_none_over_an_error() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the first")  # held
        reached.append("after the block")  # not reached: delivered as the block ended
    assert reached == ["after the first"]
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second: at once
            reached.append("after the second")
    assert reached == ["after the first"]
    with pytest.raises(ValueError):  # the block's own error is the one reported
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("the store failed")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_before_any_batch_says_nothing_was_imported(
        store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interrupt_at(monkeypatch, 5)
    with pytest.raises(ImportFileError, match="^import of list.csv interrupted before any row "
                                              "was written: nothing was imported"):
        _import(store, _csv(tmp_path, 20))
    assert store.q("SELECT count(*) AS n FROM contacts")[0]["n"] == 0


# -- a real process, a real signal ------------------------------------------------------------
def _count(backend: Backend) -> int:
    if backend.url is None:
        db = backend.home / "t.db"
        if not db.exists():
            return 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM contacts").fetchone()[0])
            except sqlite3.OperationalError:  # not migrated yet
                return 0
    store = backend.open()
    return int(store.q("SELECT count(*) AS n FROM contacts")[0]["n"])


def _audit_rows(backend: Backend) -> list[dict[str, Any]]:
    if backend.url is None:
        with sqlite3.connect(backend.home / "t.db") as conn:
            return [json.loads(r[0]) for r in conn.execute("SELECT detail FROM audit WHERE "
                                                           "action = 'import'")]
    return _audits(backend.open())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_import_ends_with_the_audit_row_and_one_error_line(
        backend: Backend, backend_cfg_file: Path, tmp_path: Path, sig: signal.Signals) -> None:
    if backend.url is None:  # the shipped config's store under tmp_path, as cfg_file's
        import yaml
        data = yaml.safe_load(backend_cfg_file.read_text())
        data["store"] = {"path": str(tmp_path / "t.db")}
        backend_cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    path = tmp_path / "big.csv"
    path.write_text("number,name\n" + "".join(f"+3314{i:07d},n{i}\n" for i in range(300_000)))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ivr.cli import main; main()", "--config",
         str(backend_cfg_file), "contacts", "import", str(path), "--source", "big", "--basis",
         "consent", "--acquired-on", "2026-11-02"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    try:
        deadline = time.monotonic() + 120
        while _count(backend) < 3 * contacts.BATCH:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no batch written in 120 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert proc.returncode == 1, err
    kept = _count(backend)
    assert 3 * contacts.BATCH <= kept < 300_000
    detail, = _audit_rows(backend)
    line = detail["last_line_read"]  # the line being read (written, or not yet: header + kept)
    assert (detail["complete"], detail["added"]) == (False, kept) and line in (kept + 1, kept + 2)
    assert len(lines) == 1 and lines[0].startswith(
        f"error: import of big.csv interrupted at line {line}: the lines before it were "
        f"imported, but for the rejected ones: {kept} added"), err
    assert "import the same file again to finish it" in lines[0]
    assert "Traceback" not in err and out == ""
