"""A store an older release keyed with a short key (releases before schema 15 took one) opens
after the upgrade, with a warning, as README says, even before its first opposition: its audit,
consents and exports were hashed with that key. The key is admitted before the store is
upgraded: a refused open leaves it at the schema its release wrote, which can still open it
(before: upgraded to the latest schema, then refused as "a new store": stuck either way)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact
from ivr.errors import StoreError
from ivr.store import sqlite_optout_key
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite import Store

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
SHORT = "villeneuve-2026-key"  # 19 characters: older releases took it
LONG, OTHER = "a" * 32, "b" * 32
NUMBER = "+33199000002"
# The objects of schemas 15 to 18: dropped, a store looks as release 14 left it.
DROP_15_17 = ("DROP TABLE optout_key", "DROP INDEX calls_open", "DROP INDEX run_snapshots_at",
              "DROP TABLE erasure_holds")


def _fill(store: Any, rows: bool, optout: bool) -> None:
    if rows:  # a contact and an export's audit row keyed with the key (subject_hash)
        add_contact(store, NUMBER, at=NOW)
        store.audit("gdpr_export", NUMBER, {}, NOW)
    if optout:
        store.add_optout("+33199000003", "post", NOW)


class Old:
    """A store at schema 14 written with `key`, opened again with IVR_OPTOUT_KEY."""
    open: Callable[[], Any]
    version: Callable[[], int]


@pytest.fixture(params=["sqlite", "postgresql"])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Old]]:
    opened: list[Any] = []

    def sqlite(key: str, rows: bool = True, optout: bool = False) -> Old:
        path = tmp_path / "ivr.db"
        store = Store.open(path, optout_key=key.encode())
        _fill(store, rows, optout)
        for statement in DROP_15_17:
            store.db.execute(statement)
        store.db.execute("PRAGMA user_version = 14")
        store.db.conn.close()
        made = Old()
        made.open = lambda: opened.append(Store.open(path)) or opened[-1]
        made.version = lambda: _sqlite_version(path)
        return made

    def postgresql(key: str, rows: bool = True, optout: bool = False) -> Old:
        from ivr.store.pg import PgStore
        from store_sql import PgTestStore
        url = request.getfixturevalue("pg_url")
        store = PgTestStore.open(url, optout_key=key.encode())
        _fill(store, rows, optout)
        for statement in DROP_15_17:
            store.db.execute(statement)
        store.db.execute("DELETE FROM schema_version WHERE version >= 15")
        store.close()
        made = Old()
        made.open = lambda: opened.append(PgStore.open(url)) or opened[-1]
        made.version = lambda: _pg_version(url)
        return made

    yield sqlite if request.param == "sqlite" else postgresql
    for store in opened:
        if hasattr(store, "close"):
            store.close()
        else:
            store.db.conn.close()


def _sqlite_version(path: Path) -> int:
    import sqlite3
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _pg_version(url: str) -> int:
    import psycopg
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_optout_key, "_warned", set())  # warned once per process


def test_a_schema_14_store_keyed_short_with_no_opposition_opens_with_a_warning(
        old: Callable[..., Old], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    made = old(SHORT)
    monkeypatch.setenv("IVR_OPTOUT_KEY", SHORT)
    with caplog.at_level(logging.WARNING):
        store = made.open()
    assert store.version == len(MIGRATIONS)
    warned = [r.getMessage() for r in caplog.records if "IVR_OPTOUT_KEY" in r.getMessage()]
    assert warned and warned[0].startswith(
        "IVR_OPTOUT_KEY is 19 characters long: weaker than the 32 random characters"), warned
    store.add_optout("+33199000004", "post", NOW)  # usable: the opposition list takes one
    made.open()  # its fingerprint recorded: the next open knows the store is keyed


@pytest.mark.parametrize("key", [SHORT, OTHER])
def test_a_refused_open_leaves_the_schema_14_store_as_its_release_left_it(
        old: Callable[..., Old], monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """SHORT: a store holding nothing a key hashed (a new store: a short key is refused);
    OTHER: a key its opposition list was not written with."""
    made = old(LONG, rows=key == OTHER, optout=key == OTHER)
    monkeypatch.setenv("IVR_OPTOUT_KEY", key)
    with pytest.raises(StoreError, match="needs at least 32" if key == SHORT else
                       "is not the one this store's opposition list was written with"):
        made.open()
    assert made.version() == 14
