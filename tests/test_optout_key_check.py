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
FICTION_NUMBER = "+33199000905"


def test_postgresql_a_missing_key_file_is_not_replaced_by_a_new_key(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    first, second = tmp_path / "host-a" / "optout.key", tmp_path / "host-b" / "optout.key"
    first.parent.mkdir()
    second.parent.mkdir()
    a = PgStore.open(pg_url, optout_key_file=first)  # an empty list: the key file is made
    assert first.exists()
    a.add_optout(NUMBER, "phone-key", NOW, "c1")  # what key 9 writes
    with pytest.raises(StoreError, match="does not exist and the store already has its "
                                         "opposition key: copy the key file"):
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


@pytest.mark.parametrize("erased", [False, True])
def test_the_first_key_to_open_a_store_is_its_key_even_before_any_opposition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, erased: bool) -> None:
    """Found in review: two hosts started on an empty list made a key each, and neither saw
    the other's oppositions. The first open records the key's fingerprint (schema 15), so
    an empty list, or one whose numbers were all erased, is checked too."""
    path = tmp_path / "ivr.db"
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    s = Store.open(path)
    if erased:
        s.add_optout(NUMBER, "phone-key", NOW, "c1")
        s.db.execute("UPDATE optouts SET number = NULL")  # as `ivr gdpr erase` leaves it
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "x" * 32)
    with pytest.raises(StoreError, match="its fingerprint differs"):
        Store.open(path)
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    Store.open(path).db.conn.close()


def test_postgresql_two_hosts_on_an_empty_list_cannot_make_two_keys(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = PgStore.open(pg_url, optout_key_file=tmp_path / "a" / "k")  # made: a new store
    with pytest.raises(StoreError, match="already has its opposition key"):
        PgStore.open(pg_url, optout_key_file=tmp_path / "b" / "k")
    assert not (tmp_path / "b" / "k").exists()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "another key")
    with pytest.raises(StoreError, match="its fingerprint differs"):
        PgStore.open(pg_url)
    a.close()


def test_a_demo_store_takes_its_real_key_before_any_opposition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a store first opened with the key beside it (fiction numbers only)
    refuses a real number and says to set IVR_OPTOUT_KEY; doing so was then refused for good
    by the fingerprint, with no word of the key beside it. With no opposition yet, nothing is
    forgotten: the store takes the new key. With one, it is refused, naming the way back."""
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    path = tmp_path / "ivr.db"
    Store.open(path).db.conn.close()  # the key beside it
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    s = Store.open(path)
    s.add_optout("+33612345678", "web", NOW)  # a real number, now allowed
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "x" * 32)  # the real key is now the store's
    with pytest.raises(StoreError, match="is not the one this store's opposition list"):
        Store.open(path)

    other = tmp_path / "other.db"
    monkeypatch.delenv("IVR_OPTOUT_KEY")
    s = Store.open(other)
    s.add_optout(FICTION_NUMBER, "web", NOW)  # an opposition written with the key beside
    s.db.conn.close()
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    with pytest.raises(StoreError, match="other.db.optout-key"):
        Store.open(other)
