"""Group commit: writes of one event-loop turn share a transaction, each in a savepoint; a
locked store keeps them, in order, until it comes back (real SQLite files, no fakes)."""
from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact
from conftest import store_at as _store_at
from ivr.store import Store
from ivr.errors import StoreError
from ivr.store.safe_writes import SafeWriter

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def store_at(path: Path) -> Store:
    s = _store_at(path)
    add_contact(s, "+33162000010", at=NOW)
    return s


def commits(s: Store) -> int:
    return int(s.db.conn.execute("PRAGMA data_version").fetchone()[0])


def test_one_turn_of_writes_is_one_transaction_and_a_bad_write_fails_alone(
        tmp_path: Path) -> None:
    s = store_at(tmp_path / "a.db")
    reader = sqlite3.connect(tmp_path / "a.db")  # data_version moves on others' commits

    async def go() -> tuple[int, int]:
        w = SafeWriter(s.transaction)
        before = int(reader.execute("PRAGMA data_version").fetchone()[0])
        for i in range(50):
            w.write(lambda i=i: s.audit("a", None, {"i": i}, NOW))
        w.write(lambda: s.db.execute("INSERT INTO no_such_table VALUES (1)"))  # a bug
        w.write(lambda: s.audit("a", None, {"i": "last"}, NOW))
        assert s.one("SELECT COUNT(*) AS n FROM audit")["n"] == 0  # not yet: end of turn
        await asyncio.sleep(0)
        after = int(reader.execute("PRAGMA data_version").fetchone()[0])
        return s.one("SELECT COUNT(*) AS n FROM audit")["n"], after - before
    written, commits_seen = asyncio.run(go())
    assert written == 51
    assert commits_seen == 1


def test_a_locked_store_keeps_the_batch_in_order_until_it_is_back(tmp_path: Path) -> None:
    s = store_at(tmp_path / "b.db")
    other = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    async def go() -> list[str]:
        w = SafeWriter(s.transaction, retry_s=0.05)
        for i in range(3):
            w.write(lambda i=i: s.audit(f"w{i}", None, {}, NOW))
        await asyncio.sleep(0)
        assert w.problem and "locked" in w.problem and len(w.pending) == 3
        w.write(lambda: s.audit("w3", None, {}, NOW))  # queued behind, not batched ahead
        other.execute("COMMIT")
        await asyncio.wait_for(w.drained.wait(), 5)
        assert w.problem is None
        return [r["action"] for r in s.q("SELECT action FROM audit ORDER BY id")]
    assert asyncio.run(go()) == ["w0", "w1", "w2", "w3"]


def test_flush_commits_at_once_for_a_reader(tmp_path: Path) -> None:
    s = store_at(tmp_path / "c.db")

    async def go() -> int:
        w = SafeWriter(s.transaction)
        w.write(lambda: s.audit("x", None, {}, NOW))
        w.flush()
        return s.one("SELECT COUNT(*) AS n FROM audit")["n"]
    assert asyncio.run(go()) == 1


def test_nested_transaction_is_a_savepoint() -> None:
    s = Store.memory()
    with s.transaction():
        s.audit("kept", None, {}, NOW)
        try:
            with s.transaction():
                s.audit("undone", None, {}, NOW)
                raise ValueError("boom")
        except ValueError:
            pass
    assert [r["action"] for r in s.q("SELECT action FROM audit")] == ["kept"]


def test_only_a_store_that_is_away_is_retried() -> None:
    from ivr.store.safe_writes import retryable
    s = Store.memory()
    with pytest.raises(sqlite3.OperationalError) as bug:
        s.db.execute("INSERT INTO no_such_table VALUES (1)")
    assert not retryable(bug.value)  # a bug: retrying would loop forever
    assert retryable(OSError(28, "No space left on device"))


def test_a_lone_bad_write_is_logged_not_raised_into_the_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store_at(tmp_path / "d.db")

    async def go() -> SafeWriter:
        w = SafeWriter(s.transaction)
        w.write(lambda: s.db.execute("INSERT INTO no_such_table VALUES (1)"))
        w.flush()  # a reader flushing must not receive someone else's failure
        return w
    w = asyncio.run(go())
    assert not w.pending and w.problem is None
    assert "failed for good" in caplog.text


@pytest.mark.parametrize("batched", [False, True])
def test_a_dropped_write_never_logs_the_number_its_error_names(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, batched: bool) -> None:
    """Found in review: an opposition the store refused (a real number beside a fiction-only
    key) logged the caller's number with its traceback, and a log outlives an erasure."""
    s = store_at(tmp_path / "d.db")

    def refused() -> None:
        raise StoreError("+33612345678 is a real number and the opposition key sits beside "
                         "the store (0612345678)")

    async def go() -> None:
        w = SafeWriter(s.transaction)
        if batched:
            w.write(lambda: None)
        w.write(refused)
        w.flush()
    asyncio.run(go())
    said = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(said) == 1 and "StoreError at " in said[0] and "<number> is a real" in said[0]
    assert "612345678" not in caplog.text and "(<number>)" in said[0]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_batch_takes_a_savepoint_per_write_only_when_one_fails(tmp_path: Path) -> None:
    """Two statements per write on every call are saved while nothing fails; a write that
    fails for good sends the batch again with a savepoint each: it alone is dropped."""
    s = store_at(tmp_path / "e.db")
    s.db.execute("CREATE TABLE t (x TEXT)")
    statements: list[str] = []
    s.db.conn.set_trace_callback(statements.append)

    def put(x: str) -> None:
        s.db.conn.execute("INSERT INTO t VALUES (?)", (x,))

    async def go(bad: bool) -> None:
        w = SafeWriter(s.transaction)
        w.write(lambda: put("a"))
        if bad:
            w.write(lambda: s.db.conn.execute("INSERT INTO no_such_table VALUES (1)"))
        w.write(lambda: put("b"))
        w.flush()
    asyncio.run(go(bad=False))
    assert [q for q in statements if q.startswith("SAVEPOINT")] == []
    assert [r["x"] for r in s.q("SELECT x FROM t ORDER BY rowid")] == ["a", "b"]
    statements.clear()
    asyncio.run(go(bad=True))
    assert len([q for q in statements if q.startswith("SAVEPOINT")]) == 3
    assert [r["x"] for r in s.q("SELECT x FROM t ORDER BY rowid")] == ["a", "b", "a", "b"]


def test_a_writes_own_transaction_joins_the_batch_and_a_half_done_one_is_undone(
        tmp_path: Path) -> None:
    """Store methods open their own transaction (a savepoint inside a batch): on a batch's
    first try they join it instead, no savepoint at all. One failing half-way (its first
    statement done) is still undone alone: the batch is written again, a savepoint a write."""
    s = store_at(tmp_path / "f.db")
    s.db.execute("CREATE TABLE t (x TEXT)")
    statements: list[str] = []
    s.db.conn.set_trace_callback(statements.append)

    def put(*xs: str) -> None:
        with s.transaction():  # as a store method does
            for x in xs:
                s.db.conn.execute("INSERT INTO t VALUES (?)", (x,))

    async def go(bad: bool) -> None:
        w = SafeWriter(s.transaction)
        w.write(lambda: put("a"))
        w.write(lambda: put("half", "no_such" if bad else "c"))
        w.write(lambda: put("b"))
        w.flush()
    asyncio.run(go(bad=False))
    assert [q for q in statements if q.startswith(("SAVEPOINT", "RELEASE"))] == []
    assert [r["x"] for r in s.q("SELECT x FROM t ORDER BY rowid")] == ["a", "half", "c", "b"]
    s.db.execute("DELETE FROM t")
    s.db.execute("CREATE TRIGGER no_such BEFORE INSERT ON t WHEN NEW.x = 'no_such' BEGIN "
                 "SELECT RAISE(ABORT, 'refused'); END")
    statements.clear()
    asyncio.run(go(bad=True))
    assert not s.db.conn.in_transaction
    assert [r["x"] for r in s.q("SELECT x FROM t ORDER BY rowid")] == ["a", "b"]
    assert len([q for q in statements if q.startswith("SAVEPOINT")]) == 6  # 3 writes, 2 each
    with s.transaction():  # after the batch: nesting is a savepoint again
        assert s._flat is False


def test_committed_is_true_once_the_write_is_in_the_store_and_false_while_it_is_queued(
        tmp_path: Path) -> None:
    """What the opposition line tells its caller hangs on it: True only once the write is
    committed; a locked store gives False within the bound, the write stays queued and lands
    once the lock is gone; a write that fails for good is False."""
    s = store_at(tmp_path / "c.db")
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)

    w_pending: list[Any] = []

    async def go() -> tuple[bool, bool, int, bool, bool]:
        w = SafeWriter(s.transaction, retry_s=0.05)
        free = await w.committed(lambda: s.audit("free", None, {}, NOW), 1.0)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        locked = await w.committed(lambda: s.audit("locked", None, {}, NOW), 0.3)
        queued = len(w.pending)
        other.execute("ROLLBACK")
        late = await w.committed(lambda: s.audit("late", None, {}, NOW), 2.0)  # behind it
        bad = await w.committed(lambda: s.db.execute("INSERT INTO no_such_table VALUES (1)"), 1.0)
        w_pending.extend(w.pending)
        return free, locked, queued, late, bad
    free, locked, queued, late, bad = asyncio.run(go())
    assert (free, locked, queued, late, bad) == (True, False, 1, True, False)
    assert not w_pending  # the bad write was dropped, not queued
    assert [r["action"] for r in s.q("SELECT action FROM audit ORDER BY id")] == \
        ["free", "locked", "late"]
