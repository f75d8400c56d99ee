"""`ivr purge` deletes by chunks, one transaction each: another writer gets the SQLite lock
between two chunks (one transaction over millions of rows held it for most of a minute), the
result is the one of a single pass, and a purge stopped midway leaves a consistent store that
the next purge finishes."""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact
from ivr.records.privacy import purge
from ivr.store import Store, utc
from ivr.store import sqlite_privacy

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=400)
AGE = timedelta(days=200)  # the cutoff: T0 + 200 days
TABLES = {"contacts": "id", "campaign_contacts": "contact_id, campaign", "calls": "id",
          "consents": "id", "optouts": "id", "controllers": "id",
          "run_snapshots": "controller"}


def fill(store: Any, contacts: int = 150, calls_each: int = 14) -> None:
    """Old and recent contacts, calls, consents (some recent ones pointing to old calls),
    oppositions and past runs: every rule of the purge has rows on both sides of the cutoff."""
    ex = store.db.execute
    for i in range(contacts):
        at = T0 + timedelta(days=(i % 3) * 150)  # 0, 150 (old), 300 days (recent)
        c = add_contact(store, f"+336{i:08d}", at=at, source="list")
        for j in range(calls_each):
            start = T0 + timedelta(days=(i * 7 + j * 31) % (190 if i % 2 else 390))
            end = None if j % 5 == 4 else utc(start + timedelta(seconds=30))
            ex("INSERT INTO calls (contact_id, number, attempt, campaign, started_at, ended_at, "
               "outcome) VALUES (?, ?, ?, 'spring', ?, ?, 'no_answer')",
               (c["id"], c["number"], j + 1, utc(start), end))
        last = store.one("SELECT max(id) AS m FROM calls")["m"]
        if i % 4 == 0:  # a consent: old, or recent and pointing to an old call (kept with it)
            when = T0 + timedelta(days=10 if i % 8 == 0 else 350)
            ex("INSERT INTO consents (call_id, contact_id, number, kind, key, at) "
               "VALUES (?, ?, ?, 'consent', '1', ?)", (last - calls_each + 1, c["id"],
                                                       c["number"], utc(when)))
        if i % 5 == 0:
            ex("INSERT INTO optouts (number_hash, number, via, created_at) VALUES (?, ?, 'key', ?)",
               (f"h{i}", c["number"], utc(T0 + timedelta(days=(i % 2) * 300))))
    for k in range(6):  # past runs: stopped long ago, recently, and one live
        at = utc(T0 + timedelta(days=k * 70))
        stopped = None if k == 5 else at
        ex("INSERT INTO controllers (id, campaign, host, pid, started_at, heartbeat_at, lease_s, "
           "stopped_at) VALUES (?, 'spring', 'h', 1, ?, ?, 30, ?)", (f"k{k}", at, at, stopped))
        ex("INSERT INTO run_snapshots (campaign, controller, at, snapshot) VALUES "
           "('spring', ?, ?, '{}')", (f"k{k}", utc(T0)))


def rows(store: Any) -> dict[str, list[dict[str, Any]]]:
    return {t: store.q(f"SELECT * FROM {t} ORDER BY {order}") for t, order in TABLES.items()}


def consistent(store: Any) -> None:
    """No row points to a deleted one, and the per-campaign call counts match the calls."""
    assert store.q("SELECT contact_id FROM campaign_contacts WHERE contact_id NOT IN "
                   "(SELECT id FROM contacts)") == []
    assert store.q("SELECT id FROM calls WHERE contact_id NOT IN (SELECT id FROM contacts)") == []
    assert store.q("SELECT id FROM consents WHERE call_id NOT IN (SELECT id FROM calls)") == []
    counted = store.one("SELECT COALESCE(SUM(n), 0) AS n FROM call_counts "
                        "WHERE campaign = 'spring'")["n"]
    assert counted == store.one("SELECT count(*) AS n FROM calls")["n"]


@contextmanager
def reference(store: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The single-pass result (chunks larger than any table), then rolled back."""
    out: dict[str, Any] = {}

    class Undo(Exception):
        pass
    try:
        with store.transaction():
            out["counts"] = purge(store, AGE, NOW)
            out["rows"] = rows(store)
            raise Undo
    except Undo:
        pass
    yield out["counts"], out["rows"]


def test_small_chunks_give_the_single_pass_result(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    before = rows(store)
    with reference(store) as (want_counts, want_rows):
        assert rows(store) == before  # the reference was rolled back
    assert want_counts["calls"] > 200 and want_counts["contacts"] > 10  # several chunks below
    monkeypatch.setattr(sqlite_privacy, "PURGE_CHUNK", 50)
    monkeypatch.setattr(sqlite_privacy, "PURGE_PAUSE_S", 0)
    assert purge(store, AGE, NOW) == want_counts
    assert rows(store) == want_rows
    consistent(store)


class Stop(Exception):
    pass


def chunk_hook(store: Any, monkeypatch: pytest.MonkeyPatch, after_commit: Any) -> None:
    """Run after_commit(n) each time one of the purge's transactions has committed."""
    real, seen, depth = store.transaction, [0], [0]

    @contextmanager
    def counted() -> Iterator[None]:
        depth[0] += 1
        try:
            with real():
                yield
        finally:
            depth[0] -= 1
        if depth[0] == 0:  # a commit, not a savepoint's release
            seen[0] += 1
            after_commit(seen[0])
    monkeypatch.setattr(store, "transaction", counted)


def test_a_purge_stopped_between_chunks_is_finished_by_the_next(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    with reference(store) as (want_counts, want_rows):
        pass
    monkeypatch.setattr(sqlite_privacy, "PURGE_CHUNK", 50)
    monkeypatch.setattr(sqlite_privacy, "PURGE_PAUSE_S", 0)

    def stop(n: int) -> None:
        if n == 7:  # in the calls, after the consents
            raise Stop
    chunk_hook(store, monkeypatch, stop)
    with pytest.raises(Stop):
        purge(store, AGE, NOW)
    monkeypatch.undo()
    consistent(store)
    left = store.one("SELECT count(*) AS n FROM calls")["n"]
    assert len(want_rows["calls"]) < left < len(rows(store)["calls"]) + 1  # partly done
    assert store.q("SELECT id FROM audit WHERE action = 'purge'") == []  # only once, at the end
    monkeypatch.setattr(sqlite_privacy, "PURGE_CHUNK", 50)
    again = purge(store, AGE, NOW)
    assert rows(store) == want_rows
    consistent(store)
    assert again["calls"] < want_counts["calls"] and again["contacts"] == want_counts["contacts"]


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    path = tmp_path / "ivr.db"
    s = Store.open(path, optout_key=b"k")
    yield s, path
    s.db.conn.close()


def other_write(path: Path, timeout: float = 0.5) -> None:
    """Another process's write (an opposition typed meanwhile), with a short busy timeout."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # as the store's writes: the lock first, then read
        conn.execute("INSERT INTO audit (at, action) VALUES ('2025-01-01T00:00:00Z', 'other')")
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_another_writer_gets_the_lock_between_two_chunks(
        file_store: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, path = file_store
    fill(store, contacts=60, calls_each=10)
    monkeypatch.setattr(sqlite_privacy, "PURGE_CHUNK", 50, raising=False)  # runs before the fix too
    wrote: list[int] = []

    def write(n: int) -> None:
        other_write(path)  # before: "database is locked", the purge's one transaction held it
        wrote.append(n)
    chunk_hook(store, monkeypatch, write)
    counts = purge(store, AGE, NOW)
    assert counts["calls"] > 100 and len(wrote) > 3
    assert store.one("SELECT count(*) AS n FROM audit WHERE action = 'other'")["n"] == len(wrote)


def test_a_writer_waiting_on_its_busy_timeout_gets_in_while_the_purge_runs(
        file_store: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each deleted call slowed to 6 ms (a chunk of 25: 0.15 s; 600 calls in one transaction:
    3.6 s): a writer that starts waiting meanwhile gets in within its 1.5 s busy timeout,
    through the pause after a chunk, not after the whole purge (margins wide for a loaded CI
    machine; the one-transaction purge still holds the lock for more than twice the timeout)."""
    store, path = file_store
    fill(store, contacts=60, calls_each=10)
    monkeypatch.setattr(sqlite_privacy, "PURGE_CHUNK", 25, raising=False)  # runs before the fix too
    store.db.conn.create_function("nap", 0, lambda: time.sleep(0.006))
    store.db.conn.execute("CREATE TEMP TRIGGER nap AFTER DELETE ON calls BEGIN SELECT nap(); END")
    errors: list[BaseException] = []
    done = threading.Event()

    def writers() -> None:
        time.sleep(0.1)
        while not done.is_set():
            try:
                other_write(path, timeout=1.5)
            except sqlite3.OperationalError as e:
                errors.append(e)
            time.sleep(0.05)  # then waits again, at another point of a chunk
    t = threading.Thread(target=writers)
    t.start()
    try:
        started = time.monotonic()
        purge(store, AGE, NOW)
        took = time.monotonic() - started
    finally:
        done.set()
        t.join()
    others = store.one("SELECT count(*) AS n FROM audit WHERE action = 'other'")["n"]
    assert errors == [] and others >= 3, (errors, others, took)
