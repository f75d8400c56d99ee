"""The threads a remote store's calls run in (PostgreSQL: no round trip on the event loop),
and a SQLite run's plans, over their own connection (Store.plan_reader).

Not asyncio's default executor: that one also resolves host names (httpx's webhook
deliveries go through loop.getaddrinfo), and a resolver that does not answer holds each of
its threads 10-30 s (glibc's timeout per nameserver). Store calls queued behind them, so a
console's Stop or Pause, read every 0.5 s, was seen up to 24 s late and dialling stalled.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 8  # above the run's concurrent store calls (a flush, a tick's read, claims, counts)
# One per process, whatever loop asks (asyncio.run makes one per run); its threads start on
# first use only.
_POOL = ThreadPoolExecutor(THREADS, thread_name_prefix="ivr-store")
# Calls sent to the threads and not yet returned: the pool's own futures, each removed when
# its call returns whatever became of the coroutine that awaited it (one cancelled, or left
# unfinished when its loop closed, would have leaked a counter kept by the coroutine).
_under_way: set[Future[Any]] = set()


async def in_store_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """asyncio.to_thread, in the store's own threads."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    done = _POOL.submit(call)
    _under_way.add(done)
    done.add_done_callback(_under_way.discard)
    return await asyncio.wrap_future(done)


def under_way() -> list[Future[Any]]:
    """Store calls queued or running in the threads now. A test's manual clock holds still
    while one is: a round trip's real milliseconds are not run time it means to test."""
    return list(_under_way)
