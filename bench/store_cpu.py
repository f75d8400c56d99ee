"""The CPU a run spends inside its store, per StoreBackend method: bench_baseline's
`--store-split` instrument, to tell the store's share of the controller's CPU per call from
the rest (AMI, FastAGI, the flow, the event loop).

Each public method of the StoreBackend protocol, on the store's class, is wrapped while the
block runs: time.thread_time() before and after, whichever thread calls it (the event loop's
or a worker's), the outermost call only (a method that calls another counts once). The
wrapper itself costs a few microseconds a call, so the run it wraps is an extra one, never
the run whose ratio is reported.
"""
from __future__ import annotations

import functools
import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ivr.store.base import StoreBackend


class StoreCpu:
    """CPU seconds and calls per method, collected by `wrapping`."""

    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._depth = threading.local()

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            t0 = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:  # an inner call is inside its caller's time already
                    self.cpu[name] += time.thread_time() - t0
                    self.calls[name] += 1
        return timed

    @contextmanager
    def wrapping(self, cls: type) -> Iterator[StoreCpu]:
        names = [n for n in vars(StoreBackend) if not n.startswith("_")  # plain methods only
                 and inspect.isfunction(inspect.getattr_static(cls, n, None))]
        kept = {n: vars(cls).get(n) for n in names}  # None: inherited, so just remove ours
        for n in names:
            setattr(cls, n, self._wrap(n, getattr(cls, n)))
        try:
            yield self
        finally:
            for n, own in kept.items():
                if own is None:
                    delattr(cls, n)
                else:
                    setattr(cls, n, own)

    def per_call(self, calls: int, top: int = 6) -> dict[str, object]:
        """The store's CPU per call, and the methods that take most of it (ms a call, calls)."""
        return {"store_ms_per_call": round(sum(self.cpu.values()) / calls * 1000, 3),
                "store_top": {n: [round(s / calls * 1000, 3), self.calls[n]]
                              for n, s in self.cpu.most_common(top)}}
