"""A controller started while another process upgrades the store (a step of a store of
realistic size takes 1-2 s) waits for it, whatever its own lock timeout (ivr run: 0.5 s), and
a lock still held after that wait is one line, not a traceback (before: `sqlite3.
OperationalError: database is locked`, 50 lines). PostgreSQL: a server lock_timeout during the
upgrade is one line too."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import cli
from ivr.errors import StoreError
from ivr.store import sqlite_core
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite import Store

LOCKED = ("cannot upgrade the store {path} from schema 14 to {last}: database is locked "
          "(another ivr is upgrading it: retry)")


def _schema_14(path: Path, key: bytes = b"k") -> None:
    store = Store.open(path, optout_key=key)
    for statement in ("DROP TABLE optout_key", "DROP INDEX calls_open",
                      "DROP INDEX run_snapshots_at", "DROP TABLE erasure_holds",
                      "PRAGMA user_version = 14"):
        store.db.execute(statement)
    store.db.conn.close()


@contextmanager
def write_lock(path: Path, seconds: float | None = None) -> Iterator[None]:
    """Another process's upgrade: the write lock held `seconds` (None: until the block ends)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, conn.execute, ("ROLLBACK",)) if seconds else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.join()
        else:
            conn.execute("ROLLBACK")
        conn.close()


def test_an_open_during_another_upgrade_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "ivr.db"
    _schema_14(path)
    with write_lock(path, seconds=1.5):
        store = Store.open(path, optout_key=b"k", busy_timeout_s=0.5)
    assert store.version == len(MIGRATIONS)


def test_a_lock_held_past_the_wait_is_one_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_core, "MIGRATION_WAIT_S", 1.0, raising=False)
    path = tmp_path / "ivr.db"
    _schema_14(path)
    with write_lock(path), pytest.raises(StoreError) as raised:
        Store.open(path, optout_key=b"k", busy_timeout_s=0.2)
    assert str(raised.value) == LOCKED.format(path=path, last=len(MIGRATIONS))
    assert Store.open(path, optout_key=b"k").version == len(MIGRATIONS)  # nothing half done


def test_ivr_run_started_during_a_long_upgrade_says_one_line(
        cfg_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_core, "MIGRATION_WAIT_S", 1.0, raising=False)
    path = tmp_path / "t.db"
    _schema_14(path, key=b"k" * 32)  # cfg_file's IVR_OPTOUT_KEY
    with write_lock(path):
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), "run", "--dry-run"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "error: " + LOCKED.format(path=path, last=len(MIGRATIONS))], result.output


def test_a_postgresql_lock_timeout_during_an_upgrade_is_one_line(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from ivr.store.pg import PgStore
    from ivr.store.pg_schema import MIGRATION_LOCK
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_url, optout_key=b"test-key")
    for statement in ("DROP TABLE optout_key", "DROP INDEX calls_open",
                      "DROP INDEX run_snapshots_at", "DROP TABLE erasure_holds",
                      "DELETE FROM schema_version WHERE version >= 15"):
        old.db.execute(statement)
    old.close()
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=300")  # the server gives up after 0.3 s
    with psycopg.connect(pg_url, autocommit=True) as other:  # another controller upgrading
        other.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        with pytest.raises(StoreError) as raised:
            PgStore.open(pg_url, optout_key=b"test-key")
    said = str(raised.value)
    assert "\n" not in said and said.startswith(
        f"cannot upgrade the store {pg_url} from schema 14 to {len(MIGRATIONS)}: "), said
    assert said.endswith("lock timeout (another ivr is upgrading it: retry)"), said


def test_a_postgresql_step_meeting_the_stores_own_objects_is_one_line(pg_url: str) -> None:
    """Found in review: a step failing on anything but a privilege or the server (a table a
    hand-edited store already has, say) was a 50-line traceback; SQLite's was one line."""
    from ivr.store.pg import PgStore
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_url, optout_key=b"test-key")
    old.db.execute("DELETE FROM schema_version WHERE version >= 18")  # erasure_holds stays
    before = old.db.execute("SELECT count(*) FROM schema_version").fetchone()[0]
    old.close()
    with pytest.raises(StoreError) as raised:
        PgStore.open(pg_url, optout_key=b"test-key")
    said = str(raised.value)
    assert "\n" not in said and said.startswith(
        f"cannot upgrade the store {pg_url} from schema 17 to {len(MIGRATIONS)}: "), said
    assert "erasure_holds" in said and said.endswith("nothing of it was changed)"), said
    import psycopg
    with psycopg.connect(pg_url) as conn:  # the version as it was: the step was rolled back
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == before
