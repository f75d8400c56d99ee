"""A store refuses to open with an opposition key its list was not written with.

The opposition list keeps HMAC(key, number): a process with another key sees no opposition and
would dial every opposed number. Found in review: a second PostgreSQL controller whose
`store.optout_key_file` was missing made a new key silently and dialled a number another
controller had just recorded as opposed (key 9).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr.errors import StoreError
from ivr.store import Store
from ivr.store.pg import PgStore

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
NUMBER = "+33199000904"


def test_postgresql_a_missing_key_file_is_not_replaced_by_a_new_key(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    first, second = tmp_path / "host-a" / "optout.key", tmp_path / "host-b" / "optout.key"
    first.parent.mkdir()
    second.parent.mkdir()
    a = PgStore.open(pg_url, optout_key_file=first)  # an empty list: the key file is made
    assert first.exists()
    a.add_optout(NUMBER, "phone-key", NOW, "c1")  # what key 9 writes
    with pytest.raises(StoreError, match="does not exist and the store already holds "
                                         "oppositions: copy the key file"):
        PgStore.open(pg_url, optout_key_file=second)
    assert not second.exists()  # no new key left behind to be picked up next time
    second.write_text(first.read_text())  # the administrator copies it
    b = PgStore.open(pg_url, optout_key_file=second)
    assert b.is_opted_out(NUMBER)
    monkeypatch.setenv("IVR_OPTOUT_KEY", "another key")
    with pytest.raises(StoreError, match="is not the one this store's opposition list was "
                                         "written with \\(1 of its latest 1"):
        PgStore.open(pg_url, optout_key_file=second)
    a.close()
    b.close()


def test_sqlite_refuses_another_key_and_opens_with_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ivr.db"
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    s = Store.open(path)
    s.add_optout(NUMBER, "phone-key", NOW, "c1")
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "x" * 32)  # another process, set differently
    with pytest.raises(StoreError, match="IVR_OPTOUT_KEY or store.optout_key_file"):
        Store.open(path)
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    assert Store.open(path).is_opted_out(NUMBER)


def test_an_empty_or_erased_list_takes_any_key(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ivr.db"
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    s = Store.open(path)
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "x" * 32)
    s = Store.open(path)  # nothing to check against yet
    s.add_optout(NUMBER, "phone-key", NOW, "c1")
    s.db.execute("UPDATE optouts SET number = NULL")  # as `ivr gdpr erase` leaves it
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "y" * 32)
    Store.open(path).db.conn.close()  # no kept number to check: it opens
