"""Writes that must not be lost: outcomes are retried until the store takes them.

A locked database or a full disk must not lose an outcome nor stall the event loop (the store
uses a short busy timeout). A failed write is queued, in order, and retried every second;
while anything is queued the campaign pauses new calls and says why.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Worth retrying: a lock, a full disk, an I/O error. Anything else would fail forever.
STORE_ERRORS = (sqlite3.OperationalError, OSError)


class SafeWriter:
    def __init__(self, retry_s: float = 1.0) -> None:
        self.pending: deque[Callable[[], Any]] = deque()
        self.problem: str | None = None
        self.last_problem = ""  # kept after recovery, for the run's report
        self.retry_s = retry_s
        self._task: asyncio.Task | None = None
        self.drained = asyncio.Event()
        self.drained.set()

    def write(self, fn: Callable[[], Any]) -> None:
        if self.pending:  # keep the order of an attempt's writes
            self.pending.append(fn)
            return
        try:
            fn()
        except STORE_ERRORS as exc:
            self._queue(fn, exc)

    def _queue(self, fn: Callable[[], Any], exc: BaseException) -> None:
        self.pending.append(fn)
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
                except STORE_ERRORS as exc:
                    self.problem = str(exc)
                    break
                except Exception:  # not the store being away: retrying cannot help
                    log.exception("a queued write failed for good and was dropped")
                self.pending.popleft()
        log.warning("store available again: %s", "outcomes written, resuming")
        self.problem = None
        self.drained.set()
