"""Writes that must not be lost: outcomes are retried until the store takes them.

A locked database, a full disk or a stopped PostgreSQL must not lose an outcome nor stall the
event loop (the store uses a short busy timeout). A failed write is queued, in order, and
retried every second; while anything is queued the campaign pauses new calls and says why.

Group commit: writes made during one turn of the event loop are committed together, in one
transaction, at the end of that turn (a write that fails for good sends the batch again, each
write in a savepoint of its own). A thousand calls ending in the same second cost a few
transactions instead of thousands.

A remote store (PostgreSQL: `store.remote`) is written from a worker thread: one flush at a
time, batches in the order they were made, the loop never waiting on a round trip. A local
SQLite file is written on the loop as before (measured: a thread hop would cost more).
"""
from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from ivr.store import pg_core, sqlite_core
from ivr.store.workers import in_store_thread

log = logging.getLogger(__name__)

# What a store that is away raises, and which of those are worth retrying: either backend's
# (the run and its state catch these around any store call).
STORE_ERRORS: tuple[type[BaseException], ...] = tuple(
    dict.fromkeys(sqlite_core.STORE_ERRORS + pg_core.STORE_ERRORS))


def retryable(exc: BaseException) -> bool:
    return sqlite_core.retryable(exc) or pg_core.retryable(exc)


__all__ = ["COMMIT_WAIT_S", "STORE_ERRORS", "Commit", "SafeWriter", "retryable"]


Transaction = Callable[[], AbstractContextManager[None]]
Batch = list[Callable[[], Any]]


# A phone number as the store holds it (E.164) or as typed (0 and nine digits): masked in a
# log line, which outlives an erasure (optout_journal.py replaces the one number it knows).
_NUMBER = re.compile(r"\+[0-9]{6,15}|\b0[1-9][0-9]{8}\b")


def _dropped(what: str, exc: BaseException) -> None:
    """Log a write dropped for good: its error's type, where it was raised and its message
    with every phone number masked, not the traceback's message: a refused opposition's
    error names the caller's number. Its frames, without the message, at debug level (-v)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    log.error("%s: %s%s: %s", what, type(exc).__name__, where,
              _NUMBER.sub("<number>", " ".join(str(exc).split())))
    log.debug("the dropped write's frames:\n%s", "".join(traceback.format_list(frames)))


class SafeWriter:
    def __init__(self, transaction: Transaction, retry_s: float = 1.0,
                 remote: bool | None = None) -> None:
        """transaction: the store's (re-entrant) transaction, which batches are written in.
        remote: write from a worker thread; None: the store's own `remote` attribute."""
        self.pending: deque[Callable[[], Any]] = deque()
        self.problem: str | None = None
        self.last_problem = ""  # kept after recovery, for the run's report
        self.retry_s = retry_s
        self.remote = bool(getattr(getattr(transaction, "__self__", None), "remote", False)
                           if remote is None else remote)
        self._transaction = transaction
        # A batch's first try: the store's flat batch() (both backends have one), where each
        # write's own transaction joins the batch's instead of opening a savepoint.
        self._first_try: Transaction = getattr(getattr(transaction, "__self__", None),
                                               "batch", None) or transaction
        self._batch: Batch = []
        self._outbox: deque[Batch] = deque()  # remote: batches waiting for the worker thread
        self._flusher: asyncio.Task[None] | None = None
        # Remote: batches handed to the worker thread, and those done with (committed or
        # queued for retry); `settled` waits for the count as it was when it was called.
        self._handed = self._landed = 0
        self._progress = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.drained = asyncio.Event()
        self.drained.set()

    def write(self, fn: Callable[[], Any]) -> None:
        if self.pending:  # keep the order of an attempt's writes
            self.pending.append(fn)
            return
        self._batch.append(fn)
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    @property
    def busy(self) -> bool:
        """Writes not yet in the store: batched, on their way (remote) or queued."""
        return bool(self._batch or self._outbox or self.pending or
                    (self._flusher is not None and not self._flusher.done()))

    def flush(self) -> None:
        """Commit the writes batched so far (also called directly before reading them back).
        Remote: hands them to the worker thread and returns; `await settled()` to wait."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self.pending:  # the store went away meanwhile: after what is already queued
            self.pending.extend(batch)
            return
        if self.remote:
            self._outbox.append(batch)
            self._handed += 1
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_remote())
            return
        failed = self._commit(batch)
        if failed is not None:
            self._queue(batch, failed)

    async def settled(self) -> None:
        """Wait until every write made so far is committed or queued for retry (`pending`).
        Not for writes made meanwhile: a busy run would otherwise wait on its own new ones."""
        self.flush()
        target = self._handed
        while self._landed < target and self._flusher is not None and not self._flusher.done():
            self._progress.clear()
            await self._progress.wait()

    async def committed(self, fn: Callable[[], Any], within_s: float) -> bool:
        """Write `fn`, then wait at most `within_s` for it to be in the store: True once its
        transaction committed. False while it is still queued (the store away: it stays queued
        and is written when the store is back), or when it failed for good. What a caller on
        the line is told hangs on it: never that an opposition is recorded before it is.
        Fails closed, not strictly on time: a local SQLite commit runs on the loop, and each
        try may wait for the store's short busy timeout past the bound."""
        tracked = _Tracked(fn)
        self.write(tracked)
        self.flush()  # now, not at the end of the loop's turn: the caller is waiting
        try:
            async with asyncio.timeout(within_s):
                while not tracked.stored:  # set by the writer (a worker thread, remote)
                    await asyncio.sleep(0.02)
        except TimeoutError:
            return False
        return True

    async def _flush_remote(self) -> None:
        """One flush at a time, in order: each batch committed in a worker thread."""
        try:
            while self._outbox:
                batch = self._outbox.popleft()
                try:
                    await self._flush_one(batch)
                finally:
                    self._landed += 1
                    self._progress.set()
        finally:  # cancelled or not: nobody waits on a flusher that is gone
            self._progress.set()

    async def _flush_one(self, batch: Batch) -> None:
        if self.pending:  # an earlier batch failed: this one waits behind it
            self.pending.extend(batch)
            return
        try:
            failed = await in_store_thread(self._commit, batch)
        except Exception as exc:  # a bug, not an absent store: say it, keep the loop going
            _dropped("a batch of writes failed for good and was dropped", exc)
            return
        if failed is not None:
            self._queue(batch, failed)

    def _commit(self, batch: Batch) -> BaseException | None:
        """Write a batch; the retryable error that stopped it (then nothing of it is kept), or
        None. A write that fails for good is dropped alone (its savepoint)."""
        if len(batch) == 1:  # nothing to share: its own transaction, as if unbatched
            try:
                batch[0]()
            except Exception as exc:
                if retryable(exc):
                    return exc
                _dropped("a write failed for good and was dropped", exc)
            _stored(batch)
            return None
        try:
            with self._first_try():
                for fn in batch:  # no savepoint each: two statements a write, on every call
                    fn()
            _stored(batch)
            return None
        except Exception as exc:
            if retryable(exc):
                return exc  # the store is away: nothing of the batch is kept, all retried
        # One write failed for good, and the batch with it: again, each write in a savepoint
        # of its own, so it fails alone (what the others did is written, as it would have been).
        try:
            with self._transaction():
                for fn in batch:
                    try:
                        with self._transaction():  # a savepoint: fails alone
                            fn()
                    except Exception as exc:
                        if retryable(exc):
                            raise  # the store is away: the whole batch is retried
                        _dropped("a write failed for good and was dropped", exc)
        except STORE_ERRORS as exc:
            if not retryable(exc):
                raise
            return exc
        _stored(batch)  # those whose savepoint held
        return None

    def _queue(self, fns: list[Callable[[], Any]], exc: BaseException) -> None:
        self.pending.extend(fns)
        if self.problem is None:
            log.error("store unavailable (%s): pausing new calls; outcomes are kept and "
                      "retried", one_line(exc))
        self.problem = self.last_problem = one_line(exc)
        self.drained.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(self.retry_s)
            failed = (await in_store_thread(self._retry_pending) if self.remote
                      else self._retry_pending())
            if failed is not None:
                self.problem = one_line(failed)
        log.warning("store available again: %s", "outcomes written, resuming")
        self.problem = None
        self.drained.set()

    def _retry_pending(self) -> BaseException | None:
        """Write the queued writes one by one, in order, until the store fails again (its
        error) or none is left (None). Remote: runs in a worker thread while the loop may
        append to the queue (deque appends and pops are thread-safe)."""
        while self.pending:
            try:
                self.pending[0]()
            except Exception as exc:
                if retryable(exc):
                    return exc
                _dropped("a queued write failed for good and was dropped", exc)
            _stored([self.pending.popleft()])
        return None


class _Tracked:
    """A write someone waits on (`committed`): `stored` once the transaction it ran in
    committed; `ran`: its last run returned (a batch rolled back runs it again)."""
    __slots__ = ("fn", "ran", "stored")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.ran, self.stored = fn, False, False

    def __call__(self) -> Any:
        self.ran = False
        out = self.fn()
        self.ran = True
        return out


def _stored(writes: Batch) -> None:
    """After a commit: the tracked writes of it that ran are in the store."""
    for fn in writes:
        if isinstance(fn, _Tracked) and fn.ran:
            fn.stored = True


# Writes an opposition, then waits at most this many seconds for it to be in the store: True
# once it is (SafeWriter.committed). The callee waits in silence meanwhile; past it they hear
# the legal mentions (the written route) instead of the confirmation.
Commit = Callable[[Callable[[], object], float], Awaitable[bool]]
COMMIT_WAIT_S = 3.0


def one_line(exc: BaseException) -> str:
    """psycopg's messages span lines (libpq's hints): the run's status shows one."""
    return " ".join(str(exc).split()) or type(exc).__name__
