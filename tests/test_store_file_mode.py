"""A SQLite store made by an older release (0644, its -wal and -shm too) becomes owner-only
when opened, saying so once: it holds voters' numbers. (SQLite alone: a PostgreSQL store's
files are the server's.)"""
from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from ivr.store.sqlite import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_world_readable_store_and_its_wal_become_owner_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    db = tmp_path / "old.db"
    Store.open(db).db.conn.close()
    os.chmod(db, 0o644)  # as an older release left it
    old = sqlite3.connect(db)  # another connection keeps the -wal and -shm files there
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE IF NOT EXISTS t (x)")
    old.execute("INSERT INTO t VALUES (1)")
    old.commit()
    side = [Path(f"{db}-wal"), Path(f"{db}-shm")]
    for file in side:
        os.chmod(file, 0o644)
    capsys.readouterr()
    try:
        Store.open(db).db.conn.close()
        assert [_mode(f) for f in [db, *side]] == [0o600] * 3
        err = capsys.readouterr().err.splitlines()
        assert f"note: {db} was readable by other users: now owner-only (0600)" in err
        assert len(err) == 3
        Store.open(db).db.conn.close()
        assert capsys.readouterr().err == ""  # said once
    finally:
        old.close()
