"""SafeWriter with a remote store (PostgreSQL): flushes run in a worker thread, one at a time, in
order, never blocking the event loop; a store that is away queues the writes and they all land,
in order, when it is back. The store here is a fake (this is the writer's logic); the real
PostgreSQL path is in tests/test_pg_store.py."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ivr.store.safe_writes import STORE_ERRORS, SafeWriter, retryable


class FakeRemote:
    remote = True

    def __init__(self, write_s: float = 0.0) -> None:
        self.write_s = write_s
        self.down = False
        self.written: list[str] = []
        self.threads: set[int] = set()
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1

    def put(self, tag: str) -> None:
        self.threads.add(threading.get_ident())
        if self.down:
            raise psycopg.OperationalError("connection refused\n\tIs the server running?")
        time.sleep(self.write_s)  # a round trip
        self.written.append(tag)


def test_postgresql_errors_are_store_errors_worth_retrying() -> None:
    assert issubclass(psycopg.OperationalError, STORE_ERRORS)
    assert retryable(psycopg.OperationalError("server closed the connection"))
    assert not retryable(psycopg.errors.UndefinedTable("no such table"))


def test_the_writer_takes_remote_from_the_store() -> None:
    async def go() -> tuple[bool, bool]:
        return (SafeWriter(FakeRemote().transaction).remote,
                SafeWriter(FakeRemote().transaction, remote=False).remote)
    assert asyncio.run(go()) == (True, False)


def test_remote_flushes_run_off_the_loop_one_at_a_time_in_order() -> None:
    store = FakeRemote(write_s=0.02)

    async def go() -> tuple[int, list[str]]:
        w = SafeWriter(store.transaction)
        ticks = 0
        for turn in range(5):  # five loop turns: five batches of three
            for i in range(3):
                w.write(lambda t=f"{turn}.{i}": store.put(t))
            await asyncio.sleep(0)
        assert w.busy and store.written != [f"{t}.{i}" for t in range(5) for i in range(3)]
        while w.busy:  # the loop keeps turning while the thread writes
            ticks += 1
            await asyncio.sleep(0.001)
        return ticks, store.written
    ticks, written = asyncio.run(go())
    assert written == [f"{t}.{i}" for t in range(5) for i in range(3)]
    assert threading.get_ident() not in store.threads  # never on the loop's thread
    # one batch at a time, never two (and no savepoint per write while none fails)
    assert store.most_active == 1
    assert ticks >= 20  # ~0.3 s of writes: the loop was never blocked


def test_a_remote_store_away_queues_in_order_then_everything_lands() -> None:
    store = FakeRemote()

    async def go() -> tuple[str | None, list[str], str]:
        w = SafeWriter(store.transaction, retry_s=0.05)
        w.write(lambda: store.put("a"))
        await w.settled()
        store.down = True
        for tag in ("b", "c"):
            w.write(lambda t=tag: store.put(t))
        await w.settled()
        assert w.problem is not None and not w.drained.is_set()
        problem = w.problem
        w.write(lambda: store.put("d"))  # behind the queued ones, not ahead
        await asyncio.sleep(0.15)  # retries fail while it is down
        assert store.written == ["a"] and list(w.pending) and w.problem
        store.down = False
        await asyncio.wait_for(w.drained.wait(), 5)
        return w.problem, store.written, problem
    problem, written, seen = asyncio.run(go())
    assert problem is None
    assert written == ["a", "b", "c", "d"]
    assert seen == "connection refused Is the server running?"  # one line for the status


def test_committed_waits_for_the_worker_thread_and_says_false_while_the_store_is_away() -> None:
    """Remote: True only once the worker thread has committed the write (a slow round trip
    waited for); False within the bound while the store is away, the write left queued, and
    written once the store is back."""
    store = FakeRemote(write_s=0.2)

    async def go() -> tuple[bool, list[str], bool, list[str]]:
        w = SafeWriter(store.transaction, retry_s=0.05)
        slow = await w.committed(lambda: store.put("a"), 2.0)
        written_then = list(store.written)
        store.down = True
        away = await w.committed(lambda: store.put("b"), 0.3)
        store.down = False
        await asyncio.wait_for(w.drained.wait(), 5)
        return slow, written_then, away, store.written
    slow, written_then, away, written = asyncio.run(go())
    assert (slow, written_then) == (True, ["a"])
    assert away is False and written == ["a", "b"]


def test_committed_is_false_for_a_write_whose_batch_could_not_commit() -> None:
    """Its function ran, but the batch's COMMIT failed for good (the writer drops the batch):
    the caller must not hear that it is recorded."""
    class CommitFails(FakeRemote):
        depth = 0

        @contextmanager
        def transaction(self) -> Iterator[None]:
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
            if self.depth == 0:  # the outer transaction's COMMIT
                raise psycopg.DataError("could not commit")
    store = CommitFails()

    async def go() -> tuple[bool, list[str]]:
        w = SafeWriter(store.transaction, retry_s=0.05)
        w.write(lambda: store.put("other"))  # the same batch: its own transaction
        told = await w.committed(lambda: store.put("optout"), 0.5)
        return told, list(w.pending)
    told, pending = asyncio.run(go())
    assert "optout" in store.written  # it ran, in a transaction that never committed
    assert told is False and pending == []
