"""Writes that must not be lost: outcomes are retried until the store takes them.

A locked database or a full disk must not lose an outcome nor stall the event loop (the store
uses a short busy timeout). A failed write is queued, in order, and retried every second;
while anything is queued the campaign pauses new calls and says why.

Group commit: writes made during one turn of the event loop are committed together, each in
its own savepoint, at the end of that turn. A thousand calls ending in the same second cost a
few transactions instead of thousands.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ivr.store.sqlite_core import STORE_ERRORS, retryable

log = logging.getLogger(__name__)

# What a store that is away raises, and which of those are worth retrying: the backend's.
__all__ = ["STORE_ERRORS", "SafeWriter", "retryable"]


Transaction = Callable[[], AbstractContextManager[None]]


class SafeWriter:
    def __init__(self, transaction: Transaction, retry_s: float = 1.0) -> None:
        """transaction: the store's (re-entrant) transaction, which batches are written in."""
        self.pending: deque[Callable[[], Any]] = deque()
        self.problem: str | None = None
        self.last_problem = ""  # kept after recovery, for the run's report
        self.retry_s = retry_s
        self._transaction = transaction
        self._batch: list[Callable[[], Any]] = []
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

    def flush(self) -> None:
        """Commit the writes batched so far (also called directly before reading them back)."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self.pending:  # the store went away meanwhile: after what is already queued
            self.pending.extend(batch)
            return
        if len(batch) == 1:  # nothing to share: its own transaction, as if unbatched
            try:
                batch[0]()
            except Exception as exc:
                if not retryable(exc):  # its caller is gone: say it, keep the loop going
                    log.exception("a write failed for good and was dropped")
                    return
                self._queue(batch, exc)
            return
        try:
            with self._transaction():
                for fn in batch:
                    try:
                        with self._transaction():  # a savepoint: fails alone
                            fn()
                    except Exception as exc:
                        if retryable(exc):
                            raise  # the store is away: the whole batch is retried
                        log.exception("a write failed for good and was dropped")
        except STORE_ERRORS as exc:
            if not retryable(exc):
                raise
            self._queue(batch, exc)

    def _queue(self, fns: list[Callable[[], Any]], exc: BaseException) -> None:
        self.pending.extend(fns)
        if self.problem is None:
            log.error("store unavailable (%s): pausing new calls; outcomes are kept and "
                      "retried", exc)
        self.problem = self.last_problem = str(exc)
        self.drained.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.sleep(self.retry_s)
            while self.pending:
                try:
                    self.pending[0]()
                except Exception as exc:
                    if retryable(exc):
                        self.problem = str(exc)
                        break
                    log.exception("a queued write failed for good and was dropped")
                self.pending.popleft()
        log.warning("store available again: %s", "outcomes written, resuming")
        self.problem = None
        self.drained.set()
