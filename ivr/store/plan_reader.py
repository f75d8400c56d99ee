"""A SQLite store's second connection for a run's plans, read in a store worker thread
(Store.plan_reader): a plan reads every pending contact (100,000: ~1 s), and on the event
loop it held every call in progress that long.

One call at a time, in whichever store thread runs it. The run closes the reader when it ends,
possibly while a plan still reads (a forced stop cancels the await, not the thread): the
plan's statement is then interrupted (sqlite3_interrupt, safe from another thread) and the
thread closes the connection as it lets go. Closing it under a running statement crashed the
process (SIGSEGV) in a review's reproduction.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ivr.errors import StoreError

T = TypeVar("T")


class PlanReader:
    def __init__(self, store: Any) -> None:
        self.store = store  # a Store over its own query-only connection
        self._lock = threading.Lock()  # held by the call under way
        self._closing = False
        self._closed = False

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args), in the calling (store) thread, while no other call runs; refused once
        the reader is closing."""
        with self._lock:
            if self._closing:
                raise StoreError("the run's plan reader is closed")
            try:
                return fn(*args)
            finally:
                if self._closing:  # closed meanwhile: the connection is closed here
                    self._close_now()

    def close(self) -> None:
        """Close the connection now if no call is under way; else interrupt the call, which
        closes it as it returns."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_now()
            finally:
                self._lock.release()
        else:
            self.store.db.conn.interrupt()

    def _close_now(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()
