"""The threads a remote store's calls run in (PostgreSQL: no round trip on the event loop),
and a SQLite run's plans, over their own connection (Store.plan_reader).

Not asyncio's default executor: that one also resolves host names (httpx's webhook
deliveries go through loop.getaddrinfo), and a resolver that does not answer holds each of
its threads 10-30 s (glibc's timeout per nameserver). Store calls queued behind them, so a
console's Stop or Pause, read every 0.5 s, was seen up to 24 s late and dialling stalled.

Nor a concurrent.futures pool: a call there builds a Future (with its own Condition and lock),
then asyncio chains a second future to it with two callbacks. A call here is one queue entry,
and its thread sets the loop's own future through call_soon_threadsafe: 11 µs of CPU a call
instead of 31, 3.6 µs of it on the loop instead of 18 (a trivial call, 200 at a time, uvloop).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
THREADS = 8  # above the run's concurrent store calls (a flush, a tick's read, claims, counts)


class _Call:
    """One call sent to the threads: its loop, the future the caller awaits, the work."""
    __slots__ = ("loop", "future", "run", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
                 run: Callable[[], Any]) -> None:
        self.loop, self.future, self.run = loop, future, run


# One set of threads per process, whatever loop asks (asyncio.run makes one per run); they
# start on first use only.
_queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
_threads: list[threading.Thread] = []
_start_lock = threading.Lock()
# Threads waiting for a call. A new thread starts only when none is: the fewer threads share
# the work, the less they contend for the GIL (all eight, each woken in turn, cost the store's
# threads a third more CPU a call setup than the three or four the load keeps busy).
_idle = threading.Semaphore(0)
# Calls sent to the threads and not yet returned, each removed when it returns whatever
# became of the coroutine that awaited it (one cancelled, or left unfinished when its loop
# closed, would have leaked a counter kept by the coroutine).
_under_way: set[_Call] = set()


async def in_store_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """asyncio.to_thread, in the store's own threads."""
    if not _idle.acquire(blocking=False) and len(_threads) < THREADS:
        _start()
    loop = asyncio.get_running_loop()
    call = _Call(loop, loop.create_future(),
                 functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))
    _under_way.add(call)
    _queue.put(call)
    result: T = await call.future
    return result


def under_way() -> list[_Call]:
    """Store calls queued or running in the threads now. A test's manual clock holds still
    while one is: a round trip's real milliseconds are not run time it means to test."""
    return list(_under_way)


def _start() -> None:
    with _start_lock:
        if len(_threads) < THREADS:
            # A daemon: an idle thread waits on the queue for ever, and the interpreter's
            # exit must not wait for it (a run's writes have settled before its loop ends).
            thread = threading.Thread(target=_serve, name=f"ivr-store_{len(_threads)}",
                                      daemon=True)
            thread.start()
            _threads.append(thread)


def _serve() -> None:
    while True:
        call = _queue.get()
        try:
            value, ok = call.run(), True
        except BaseException as exc:  # handed to the coroutine that awaits it
            value, ok = exc, False
        finally:
            _under_way.discard(call)
        # Idle before the caller hears back: its next call, sent at once, finds this thread
        # and does not start another.
        _idle.release()
        try:
            call.loop.call_soon_threadsafe(_settle, call.future, ok, value)
        except RuntimeError:  # its loop closed meanwhile: nobody awaits the result
            pass
        del call, value  # not kept alive by an idle thread until its next call


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():  # its caller gave up; the call itself ran to its end
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _forked() -> None:
    """A child process has none of its parent's threads: it starts its own on first use."""
    global _queue, _start_lock, _idle
    _threads.clear()
    _under_way.clear()
    _queue, _start_lock, _idle = queue.SimpleQueue(), threading.Lock(), threading.Semaphore(0)


os.register_at_fork(after_in_child=_forked)
