"""A store that fails under a command (a full disk, a lock held past the wait, PostgreSQL away)
is one error line that names what to do, never a traceback; an import it stops keeps its whole
batches, says how many, and records `complete: false` when the store still takes the audit row.
The full disk is SQLite's own SQLITE_FULL (PRAGMA max_page_count on the command's connection);
on PostgreSQL the driver's errors are raised where the store would raise them."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
from click.testing import CliRunner

from conftest import Backend, store_at
from ivr.cli import cli
from ivr.records import contacts
from ivr.records.contacts import PartialImportError

from test_import_interrupted import NOW, _import  # the same import of list-a


def _csv(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "list.csv"
    path.write_text("number,name\n" + "".join(f"+3314{i:07d},name {i}\n" for i in range(count)))
    return path


def _fail_third_bind(store: Any, monkeypatch: Any) -> None:
    """The store fails (full disk) on the import's third batch."""
    bind, calls = store.bind_contacts, []

    def bind_or_fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise _store_error("sqlite" if hasattr(store, "db") else "postgresql")
        return bind(*args, **kwargs)
    monkeypatch.setattr(store, "bind_contacts", bind_or_fail)


def _audits(store: Any) -> list[dict[str, Any]]:
    return [json.loads(r["detail"]) for r in store.q("SELECT detail FROM audit "
                                                      "WHERE action = 'import' ORDER BY id")]


def _count(store: Any) -> int:
    return int(store.q("SELECT count(*) AS n FROM contacts")[0]["n"])


def _full(store: Any, spare_pages: int) -> None:
    """This connection's SQLite file may grow by `spare_pages` pages more: then SQLITE_FULL."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + spare_pages}")


def _store_error(backend: str) -> Exception:
    if backend == "sqlite":
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        return exc
    return psycopg.errors.DiskFull("could not extend file: No space left on device")


def test_a_full_disk_mid_import_keeps_whole_batches_and_says_so(tmp_path: Path,
                                                                monkeypatch: Any) -> None:
    monkeypatch.setattr(contacts, "BATCH", 100)
    store = store_at(tmp_path / "t.db")
    _full(store, 40)
    with pytest.raises(PartialImportError) as err:
        _import(store, _csv(tmp_path, 20_000))
    message = str(err.value)
    kept = _count(store)
    assert 0 < kept < 20_000 and kept % 100 == 0  # whole batches only
    assert "\n" not in message and "store disk full or I/O error" in message
    assert f"{kept} line(s) of the file before it are in the store" in message
    assert "free space, then retry" in message and "import the same file again" in message
    audits = _audits(store)  # the audit row, or the line says the disk refused it too
    if audits:
        assert (audits[0]["complete"], audits[0]["added"]) == (False, kept)
    else:
        assert "its audit row could not be written either" in message


def test_a_store_failure_mid_import_records_it_incomplete(store: Any, tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    """Both backends: the third batch fails in the store; the audit row still goes in."""
    monkeypatch.setattr(contacts, "BATCH", 10)
    _fail_third_bind(store, monkeypatch)
    with pytest.raises(PartialImportError, match="stopped at line .*: store .*(disk|space).*"
                                                 "20 line\\(s\\) of the file before it"):
        _import(store, _csv(tmp_path, 100))
    assert _count(store) == 20
    detail, = _audits(store)
    assert (detail["complete"], detail["added"]) == (False, 20)


def test_a_session_cleanup_failing_too_does_not_hide_what_was_kept(
        store: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """PostgreSQL gone: the import session's own cleanup (its temp table) fails as well."""
    from contextlib import contextmanager
    monkeypatch.setattr(contacts, "BATCH", 10)
    bind, calls, session = store.bind_contacts, [], store.import_session
    backend = "sqlite" if hasattr(store, "db") else "postgresql"

    def bind_or_fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise _store_error(backend)
        return bind(*args, **kwargs)

    @contextmanager
    def failing_cleanup() -> Any:
        with session():
            try:
                yield
            finally:
                raise _store_error(backend)
    monkeypatch.setattr(store, "bind_contacts", bind_or_fail)
    monkeypatch.setattr(store, "import_session", failing_cleanup)
    with pytest.raises(PartialImportError, match="20 line\\(s\\) of the file before it"):
        _import(store, _csv(tmp_path, 100))


def test_the_console_upload_on_a_full_store_is_the_partial_upload_answer(
        store: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """PartialUpload: the console's 400 with the counts (ivr/web/api.py, pages.py), not a 500."""
    from conftest import make_config
    from ivr.web import records
    monkeypatch.setattr(contacts, "BATCH", 10)
    _fail_third_bind(store, monkeypatch)
    data = _csv(tmp_path, 100).read_bytes()
    with pytest.raises(records.PartialUpload) as err:
        records.upload_contacts(make_config(tmp_path), store, "c1", data, "list.csv",
                                source="list-a", basis="consent", acquired_on="", now=NOW)
    assert err.value.result["partial"] is True and err.value.result["imported"] == 20


def _cli(cfg_file: Path, *args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli, ["--config", str(cfg_file), *args])


def _one_error_line(result: Any) -> str:
    lines = [ln for ln in result.stderr.splitlines()
             if not ln.startswith(("note: ", "warning: ", "rejected line"))]
    assert result.exit_code == 1, (result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _open_full(monkeypatch: Any, spare_pages: int, fill: bool = False) -> None:
    """Each store the command opens is a full disk past `spare_pages` pages; `fill`: filler
    rows take the pages left first (an opposition's few rows would fit in them)."""
    from ivr.store import factory
    opened = factory.open_store

    def full(*args: Any, **kwargs: Any) -> Any:
        store = opened(*args, **kwargs)
        _full(store, spare_pages)
        if fill:
            _fill_every_page(store.db.conn)
        return store
    monkeypatch.setattr(factory, "open_store", full)


def test_cli_import_on_a_full_disk_is_one_line_with_the_counts_and_audit(
        cfg_file: Path, tmp_path: Path, monkeypatch: Any) -> None:
    assert _cli(cfg_file, "report").exit_code == 0  # the store, created and migrated
    monkeypatch.setattr(contacts, "BATCH", 100)
    _open_full(monkeypatch, 40)
    result = _cli(cfg_file, "contacts", "import", str(_csv(tmp_path, 20_000)),
                  "--source", "list-a", "--basis", "consent")
    line = _one_error_line(result)
    with sqlite3.connect(tmp_path / "t.db") as conn:  # read as it is, no key needed
        kept = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        audits = [json.loads(r[0]) for r in conn.execute("SELECT detail FROM audit WHERE "
                                                         "action = 'import'")]
    assert 0 < kept < 20_000
    assert line.startswith("error: import of list.csv stopped at line ")
    assert f"{kept} line(s) of the file before it are in the store" in line
    assert audits == [] and "audit row could not be written" in line or \
        (audits[0]["complete"], audits[0]["added"]) == (False, kept)


def _fill_every_page(conn: sqlite3.Connection) -> None:
    """Filler rows, committed, up to the page limit: a write that needs one more page is then
    refused (SQLITE_FULL), as on a full disk."""
    conn.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    for size in (4000, 1000, 200, 50, 10):
        while True:
            try:
                conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError:
                break
    if conn.in_transaction:
        conn.execute("COMMIT")


def test_cli_optout_add_on_a_full_disk_says_it_was_not_recorded(
        cfg_file: Path, tmp_path: Path, monkeypatch: Any) -> None:
    assert _cli(cfg_file, "report").exit_code == 0
    _open_full(monkeypatch, 0, fill=True)
    line = _one_error_line(_cli(cfg_file, "optout", "add", "+33612345678", "--via", "post"))
    assert line == (f"error: store {tmp_path / 't.db'}: disk full or I/O error; the opposition "
                    "of +33612345678 was NOT recorded: free space, then retry")


def test_cli_optout_add_on_a_locked_store_says_it_was_not_recorded(
        cfg_file: Path, tmp_path: Path, monkeypatch: Any) -> None:
    from ivr.cli import Ctx
    assert _cli(cfg_file, "report").exit_code == 0
    store = Ctx.store
    monkeypatch.setattr(Ctx, "store", lambda self, busy_timeout_s=30.0, **kw:
                        store(self, 0.2, **kw))  # the 30 s wait, shortened
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a purge holding the write lock
    try:
        line = _one_error_line(_cli(cfg_file, "optout", "add", "+33612345678", "--via",
                                    "post"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert line.startswith(f"error: store {tmp_path / 't.db'}: locked by another ivr command "
                           "(a purge, an import)")
    assert line.endswith("; the opposition of +33612345678 was NOT recorded: retry when it ends")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_cli_store_errors_of_either_backend_are_one_line(
        backend: Backend, backend_cfg_file: Path, monkeypatch: Any) -> None:
    """The lock on PostgreSQL (lock_timeout) and SQLite's busy error, raised where the store
    raises them: one line, the opposition said not recorded."""
    from ivr.records import privacy

    def locked(*args: Any, **kwargs: Any) -> None:
        if backend.url is None:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
            raise exc
        raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    monkeypatch.setattr(privacy, "optout_add", locked)
    line = _one_error_line(_cli(backend_cfg_file, "optout", "add", "+33612345678", "--via",
                                "post"))
    assert "locked by another ivr command" in line and "was NOT recorded" in line
    assert "password" not in line and "***" not in line


def test_a_bug_keeps_its_traceback(cfg_file: Path, monkeypatch: Any) -> None:
    """Not every OperationalError is the store being away: a missing table is a bug."""
    from ivr.records import privacy

    def broken(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("no such table: optouts")
    monkeypatch.setattr(privacy, "optout_add", broken)
    result = _cli(cfg_file, "optout", "add", "+33612345678", "--via", "post")
    assert isinstance(result.exception, sqlite3.OperationalError)
