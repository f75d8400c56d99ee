"""Two processes making the same new store or key file at once, and an empty key file.

Found in review: the loser of the race to create a key file failed ("cannot read or create it
(File exists)"), or read it empty while the winner had not written it yet; an empty key file
keyed the opposition list with b"" (anyone could hash every number back); two processes
creating the same new SQLite store both ran migration 1 ("table contacts already exists").
"""
from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend, make_config
from ivr.app import open_store
from ivr.errors import IvrError, StoreError
from ivr import secret_files
from ivr.secret_files import read_or_create
from ivr.store import Store
from ivr.store.schema import MIGRATIONS


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)


def _write_later(path: Path, text: str, after_s: float) -> threading.Thread:
    def write() -> None:
        time.sleep(after_s)
        with open(path, "w") as fh:  # the winner's write, after its exclusive create
            fh.write(text)
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_the_loser_of_the_race_to_create_a_key_file_reads_the_winners(tmp_path: Path) -> None:
    """Both found it missing; the other process creates it (empty, written an instant later)
    between this one's check and its exclusive create."""
    path = tmp_path / "optout.key"
    later: list[threading.Thread] = []

    def make() -> str:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the winner
        later.append(_write_later(path, "winner's key\n", 0.2))
        return "loser's key"
    assert read_or_create(path, make) == "winner's key"
    later[0].join()
    assert path.read_text() == "winner's key\n"


def test_a_key_file_found_empty_while_being_written_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "optout.key"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    thread = _write_later(path, "the key\n", 0.2)
    assert read_or_create(path, lambda: "another key") == "the key"
    thread.join()


def _open_store(db: Path, key_file: Path, both: Any, out: Connection) -> None:
    """Store.open in a child, which makes its key (os.urandom) only once the other child has
    found the key file missing too: the race, every time."""
    real_urandom, waited = os.urandom, []

    def urandom(n: int) -> bytes:
        if not waited:
            waited.append(both.wait(10))
        return real_urandom(n)
    os.urandom = urandom  # type: ignore[assignment]  # this child process only
    try:
        out.send(("ok", Store.open(db, optout_key_file=key_file)._key))
    except BaseException as exc:  # what the operator would see
        out.send(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_opening_a_new_store_share_one_new_key_file(tmp_path: Path) -> None:
    """Both find the named key file missing and make a key: one writes it, the other opens
    with that one."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(2):
        db, key_file = tmp_path / f"r{round_}" / "ivr.db", tmp_path / f"k{round_}" / "key"
        key_file.parent.mkdir()
        Store.open(db, optout_key=b"x").db.conn.close()  # migrated: the race is on the key
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("DELETE FROM optout_key")
        conn.close()  # before the fork: a child must not inherit SQLite's locks
        results = _race(ctx, _open_store, db, key_file, ctx.Barrier(2))
        assert [r[0] for r in results] == ["ok", "ok"], results
        assert results[0][1] == results[1][1] == key_file.read_text().strip().encode()


def _race(ctx: Any, target: Any, *args: Any) -> list[tuple[str, Any]]:
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    procs = [ctx.Process(target=target, args=(*args, send)) for _, send in pipes]
    for proc in procs:
        proc.start()
    results = [recv.recv() for recv, _ in pipes]
    for proc in procs:
        proc.join(10)
    return results


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty key file is read again for a while (one being written): not 2 s per case."""
    monkeypatch.setattr(secret_files, "WAIT_S", 0.2, raising=False)


@pytest.mark.usefixtures("short_wait")
def test_an_empty_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    for content in ("", " \n\t\n"):
        named = tmp_path / "secrets" / "optout.key"
        named.parent.mkdir(exist_ok=True)
        named.write_text(content)
        with pytest.raises(StoreError) as exc:
            Store.open(tmp_path / "data" / "ivr.db", optout_key_file=named)
        assert f"store.optout_key_file {named} is empty" in str(exc.value)
        assert "\n" not in str(exc.value)
        side = tmp_path / "demo" / "ivr.db.optout-key"
        side.parent.mkdir(exist_ok=True)
        side.write_text(content)
        with pytest.raises(StoreError, match=f"the opposition key {side} is empty"):
            Store.open(tmp_path / "demo" / "ivr.db")


def test_a_key_file_of_raw_bytes_is_refused_in_one_line(tmp_path: Path) -> None:
    """`openssl rand 32 > key` (no -hex) gave a UnicodeDecodeError traceback; the bytes are
    never quoted back."""
    named = tmp_path / "secrets" / "optout.key"
    named.parent.mkdir()
    named.write_bytes(b"\xff\xfe" + os.urandom(30))
    for opening in (lambda: Store.open(tmp_path / "data" / "ivr.db", optout_key_file=named),
                    lambda: read_or_create(named, lambda: "unused")):
        with pytest.raises(IvrError) as exc:
            opening()
        assert str(exc.value) == (f"{named} is not text: write the secret as hex (e.g. "
                                  f"`openssl rand -hex 32 > {named}`)")


@pytest.mark.usefixtures("short_wait")
def test_either_backend_refuses_an_empty_key_file(backend: Backend,
                                                   tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    empty = tmp_path_factory.mktemp("secrets") / "optout.key"
    empty.write_text("\n")
    cfg = make_config(backend.home, store={**backend.section(), "optout_key_file": str(empty)})
    with pytest.raises(StoreError) as exc:
        open_store(cfg)
    assert str(exc.value).startswith(f"store.optout_key_file {empty} is empty: write the "
                                     "store's opposition key in it")
    assert "\n" not in str(exc.value)


def _migrate(db: Path, go: Connection, out: Connection) -> None:
    """Store.open in a child once told to, telling the parent when it asks for the write lock
    (the parent holds it: both children have read the schema version by then)."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: out.send(("lock", None))
                                if sql.startswith("BEGIN IMMEDIATE") else None)
        return conn
    sqlite3.connect = connect  # type: ignore[assignment]  # this child process only
    go.recv()
    try:
        store = Store.open(db, optout_key=b"k" * 32)
        out.send(("ok", store.version))
    except BaseException as exc:
        out.send(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_creating_the_same_store_migrate_it_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        db = tmp_path / f"r{round_}" / "ivr.db"
        db.parent.mkdir()
        # Forked before the parent opens the file: a child must not inherit its SQLite locks.
        gos, pipes = [ctx.Pipe(duplex=False) for _ in range(2)], \
            [ctx.Pipe(duplex=False) for _ in range(2)]
        procs = [ctx.Process(target=_migrate, args=(db, go, send))
                 for (go, _), (_, send) in zip(gos, pipes)]
        for proc in procs:
            proc.start()
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")  # as Store.open sets it: readers go on
        holder.execute("BEGIN IMMEDIATE")  # the write lock: both children stop at theirs
        for _, go in gos:
            go.send(None)
        for recv, _ in pipes:
            assert recv.poll(20) and recv.recv() == ("lock", None)
        holder.execute("COMMIT")
        holder.close()
        results = []
        for recv, _ in pipes:
            while recv.poll(20) and (got := recv.recv())[0] == "lock":
                pass
            results.append(got)
        for proc in procs:
            proc.join(10)
        assert results == [("ok", len(MIGRATIONS))] * 2, results
