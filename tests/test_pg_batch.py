"""PostgreSQL's group commit, as SQLite's: a batch of writes is one transaction whose writes
join it without a savepoint each (two round trips a write: 1,350 on the sandbox's 1,000
calls); a write failing for good sends the batch again, a savepoint a write, and is dropped
alone. And the per-call writes that went in one round trip each: the answer's two rows
(record_answer), a choice's lock and keys (record_choice)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from psycopg import pq

from ivr.store.base import CallResult
from store_sql import PgTestStore as PgStore
from ivr.store.safe_writes import SafeWriter

from conftest import add_contact, attempt, contact

AT = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)


# The conftest's `store` on PostgreSQL alone (with the tests' raw-SQL conveniences): what is
# tested here is the PostgreSQL backend's.
pytestmark = pytest.mark.parametrize("store", ["postgresql"], indirect=True)


@pytest.fixture
def savepoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each transaction psycopg opens, as BEGIN or SAVEPOINT (one already open), and each the
    store begins itself in pipeline mode (pg_pipeline.begun), as BEGIN."""
    seen: list[str] = []
    enter, execute = psycopg.Transaction.__enter__, psycopg.Connection.execute

    def counted(self: Any) -> Any:
        idle = self._conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        seen.append("BEGIN" if idle else "SAVEPOINT")
        return enter(self)

    def begun(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
        if query == "BEGIN":
            seen.append("BEGIN")
        return execute(self, query, *args, **kw)
    monkeypatch.setattr(psycopg.Transaction, "__enter__", counted)
    monkeypatch.setattr(psycopg.Connection, "execute", begun)
    yield seen


def _table(store: PgStore) -> None:
    store.q("CREATE TABLE IF NOT EXISTS batch_t (x TEXT NOT NULL)")
    store.q("DELETE FROM batch_t")


def _written(store: PgStore) -> list[str]:
    return [r["x"] for r in store.q("SELECT x FROM batch_t ORDER BY ctid")]


def test_a_batch_is_one_transaction_and_a_failing_write_is_dropped_alone(
        store: PgStore, savepoints: list[str]) -> None:
    _table(store)

    def put(*xs: str | None) -> None:
        with store.transaction():  # as a store method does
            for x in xs:
                store.q("INSERT INTO batch_t VALUES (?)", (x,))

    async def go(bad: bool) -> None:
        w = SafeWriter(store.transaction)
        assert w.remote
        w.write(lambda: put("a"))
        w.write(lambda: put("half", None if bad else "c"))  # NULL: refused half-way
        w.write(lambda: put("b"))
        w.flush()
        await w.settled()
    asyncio.run(go(bad=False))
    assert savepoints == ["BEGIN"]
    assert _written(store) == ["a", "half", "c", "b"]
    store.q("DELETE FROM batch_t")
    savepoints.clear()
    asyncio.run(go(bad=True))
    # the first try, undone whole; then again, a savepoint a write (and the write's own
    # transaction inside it, a savepoint too, as before): "half" undone alone
    assert savepoints == ["BEGIN", "BEGIN"] + ["SAVEPOINT"] * 6
    assert _written(store) == ["a", "b"]


def test_outside_a_batch_a_nested_transaction_is_still_a_savepoint(
        store: PgStore, savepoints: list[str]) -> None:
    _table(store)
    with store.transaction():
        store.q("INSERT INTO batch_t VALUES ('kept')")
        with pytest.raises(psycopg.errors.NotNullViolation):
            with store.transaction():
                store.q("INSERT INTO batch_t VALUES (NULL)")
    assert savepoints == ["BEGIN", "SAVEPOINT"]
    assert _written(store) == ["kept"]
    with store.batch():
        with store.transaction():
            store.q("INSERT INTO batch_t VALUES ('flat')")
    with store.transaction():  # the batch's flag went with it
        with store.transaction():
            store.q("INSERT INTO batch_t VALUES ('nested')")
    assert savepoints == ["BEGIN", "SAVEPOINT", "BEGIN", "BEGIN", "SAVEPOINT"]


def _call(store: PgStore, number: str) -> int:
    add_contact(store, number, at=AT)
    return int(attempt(store, contact(store, number), "c1", "+33162000000", AT)["id"])


def test_record_answer_sets_the_call_and_its_proof_row_the_earliest_wins(
        store: PgStore, savepoints: list[str]) -> None:
    call_id = _call(store, "+33199001201")
    refusal = CallResult(outcome="refused", stage="intro", keys="2", heard={},
                         choice="refusal", choice_key="2")
    assert store.record_choice(call_id, refusal, AT.replace(minute=5))
    savepoints.clear()
    store.record_answer(call_id, AT.replace(minute=2))
    assert savepoints == []  # one statement, its own transaction
    store.record_answer(call_id, AT.replace(minute=3))  # later: not kept
    row = store.one("SELECT answered_at FROM calls WHERE id = ?", (call_id,))
    proof = store.one("SELECT answered_at FROM consents WHERE call_id = ?", (call_id,))
    assert row["answered_at"] == proof["answered_at"] == "2026-12-07T18:02:00.000Z"


def test_record_choice_keeps_the_keys_once_and_nothing_after_the_outcome(
        store: PgStore) -> None:
    call_id = _call(store, "+33199001202")
    optout = CallResult(outcome="opted_out", stage="intro", keys="19", heard={},
                        choice="optout", choice_key="9")
    assert store.record_choice(call_id, optout, AT)
    assert not store.record_choice(call_id, optout, AT)  # once per call and kind
    assert store.one("SELECT keys FROM calls WHERE id = ?", (call_id,))["keys"] == "19"
    store.q("UPDATE calls SET outcome = 'opted_out' WHERE id = ?", (call_id,))
    late = CallResult(outcome="refused", stage="intro", keys="192", heard={},
                      choice="refusal", choice_key="2")
    assert not store.record_choice(call_id, late, AT)  # the call has its outcome
    assert store.one("SELECT keys FROM calls WHERE id = ?", (call_id,))["keys"] == "19"
    assert not store.record_choice(10 ** 9, late, AT)  # no such call
    assert [r["kind"] for r in store.q("SELECT kind FROM consents WHERE call_id = ?",
                                          (call_id,))] == ["optout"]
