"""A store from before the key's fingerprint (schema 15) whose oppositions all lost their
number (erased: only the keyed hash kept) checks no key: the upgrade used to record whatever
IVR_OPTOUT_KEY it was given, every opposition then silently unmatched and the right key
refused. Now such a store is refused, in one line, until the operator confirms the key once
(IVR_OPTOUT_KEY_CONFIRM=1); a fresh store and a store with a kept number open as before."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ivr.cli import cli
from ivr.errors import StoreError
from ivr.store.schema import MIGRATIONS
from ivr.store.sqlite import Store

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
RIGHT, WRONG = b"r" * 32, b"w" * 32
ERASED = ("+33612345602", "+33612345603")
KEPT = "+33612345604"
SAID = ("2 oppositions of this store cannot be checked against IVR_OPTOUT_KEY (their numbers "
        "were erased): if it is the key the previous release used, set "
        "IVR_OPTOUT_KEY_CONFIRM=1 once to record it")
# The objects of schemas 15 to 18 (19 and 20 migrate again as they are): a store as release 14
# left it.
DROP_15_18 = ("DROP TABLE optout_key", "DROP INDEX calls_open", "DROP INDEX run_snapshots_at",
              "DROP TABLE erasure_holds")
Opener = Callable[[bytes], Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def release_14(request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Opener, Any]]]:
    """make(kept=False): a schema-14 store keyed with RIGHT whose two oppositions were erased
    (and one kept if `kept`); returns (open(key) -> store, version() -> int)."""
    monkeypatch.delenv("IVR_OPTOUT_KEY_CONFIRM", raising=False)
    opened: list[Any] = []

    def fill(store: Any, kept: bool) -> None:
        for number in ERASED:
            store.add_optout(number, "email", NOW)
        store.db.execute("UPDATE optouts SET number = NULL")  # what the erasure leaves
        if kept:
            store.add_optout(KEPT, "post", NOW)
        for statement in DROP_15_18:
            store.db.execute(statement)

    def sqlite(kept: bool = False) -> tuple[Opener, Any]:
        path = tmp_path / "ivr.db"
        store = Store.open(path, optout_key=RIGHT)
        fill(store, kept)
        store.db.execute("PRAGMA user_version = 14")
        store.db.conn.close()

        def version() -> int:
            with closing(sqlite3.connect(path)) as conn:
                return int(conn.execute("PRAGMA user_version").fetchone()[0])
        return (lambda key: opened.append(Store.open(path, optout_key=key)) or opened[-1],
                version)

    def postgresql(kept: bool = False) -> tuple[Opener, Any]:
        from store_sql import PgTestStore
        url = request.getfixturevalue("pg_url")
        store = PgTestStore.open(url, optout_key=RIGHT)
        fill(store, kept)
        store.db.execute("DELETE FROM schema_version WHERE version >= 15")
        store.close()
        return (lambda key: opened.append(PgTestStore.open(url, optout_key=key)) or opened[-1],
                lambda: _pg_version(url))

    yield sqlite if request.param == "sqlite" else postgresql
    for store in opened:
        if hasattr(store, "close"):
            store.close()


def _pg_version(url: str) -> int:
    import psycopg
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])


def test_no_key_is_recorded_for_erased_oppositions_without_the_confirmation(
        release_14: Callable[..., tuple[Opener, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    open_with, version = release_14()
    for key in (WRONG, RIGHT):  # neither can be told apart: both refused, the store untouched
        with pytest.raises(StoreError) as raised:
            open_with(key)
        assert str(raised.value) == SAID
        assert version() == 14
    monkeypatch.setenv("IVR_OPTOUT_KEY_CONFIRM", "1")
    store = open_with(RIGHT)
    assert store.version == len(MIGRATIONS)
    assert all(store.is_opted_out(n) for n in ERASED)
    monkeypatch.delenv("IVR_OPTOUT_KEY_CONFIRM")
    assert all(open_with(RIGHT).is_opted_out(n) for n in ERASED)  # recorded: no more asking
    with pytest.raises(StoreError, match="its fingerprint differs"):
        open_with(WRONG)


def test_the_confirmation_cannot_make_a_wrong_key_stick_where_a_number_is_kept(
        release_14: Callable[..., tuple[Opener, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    open_with, version = release_14(kept=True)
    monkeypatch.setenv("IVR_OPTOUT_KEY_CONFIRM", "1")
    with pytest.raises(StoreError, match="1 of its latest 1 oppositions do not match"):
        open_with(WRONG)
    assert version() == 14
    monkeypatch.delenv("IVR_OPTOUT_KEY_CONFIRM")
    store = open_with(RIGHT)  # a kept number checks the key: no confirmation needed
    assert store.version == len(MIGRATIONS)
    assert all(store.is_opted_out(n) for n in (*ERASED, KEPT))


def test_a_fresh_store_needs_no_confirmation(store: Any) -> None:
    assert store.version == len(MIGRATIONS)
    store.add_optout(KEPT, "post", NOW)
    assert store.is_opted_out(KEPT)


def test_ivr_check_and_run_say_it_in_one_line(
        cfg_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.db"  # cfg_file's store, its key IVR_OPTOUT_KEY
    store = Store.open(path, optout_key=b"k" * 32)
    for number in ERASED:
        store.add_optout(number, "email", NOW)
    store.db.execute("UPDATE optouts SET number = NULL")
    for statement in DROP_15_18:
        store.db.execute(statement)
    store.db.execute("PRAGMA user_version = 14")
    store.db.conn.close()
    monkeypatch.delenv("IVR_OPTOUT_KEY_CONFIRM", raising=False)
    for command in (["check"], ["run", "--dry-run"]):
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), *command])
        assert result.exit_code == 1, result.output
        assert f"error: {SAID}" in result.output.splitlines(), result.output
    monkeypatch.setenv("IVR_OPTOUT_KEY_CONFIRM", "1")
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    assert SAID not in result.output, result.output
    assert Store.open(path).version == len(MIGRATIONS)
