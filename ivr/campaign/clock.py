"""The campaign's one source of time: wall clock (UTC), monotonic clock, timers and waits.

Pacing, holds, grace timers and the run state read time only through a `Clock`, so a test can
drive them with `ManualClock` instead of waiting in real time.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """Real time: datetime.now(UTC), time.monotonic(), the event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return asyncio.get_running_loop().call_later(max(delay, 0.0), fn, *args)

    async def wait(self, *events: asyncio.Event, timeout: float) -> None:
        """Until one of the events is set or `timeout` seconds have passed."""
        if not events:
            await asyncio.sleep(max(timeout, 0.0))
            return
        tasks = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(tasks, timeout=max(timeout, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()

    async def sleep(self, seconds: float) -> None:
        await self.wait(timeout=seconds)


class _ManualTimer:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """Time that moves only when a test calls `advance`: timers and waits follow it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
        self.t = 0.0
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = _ManualTimer(fn, args)
        heapq.heappush(self._timers, (self.t + max(delay, 0.0), next(self._seq), timer))
        return timer

    async def wait(self, *events: asyncio.Event, timeout: float) -> None:
        woken = asyncio.Event()
        timer = self.call_later(timeout, woken.set)
        try:
            await Clock.wait(self, woken, *events, timeout=3600.0)
        finally:
            timer.cancel()

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due, in order."""
        end = self.t + seconds
        while self._timers and self._timers[0][0] <= end:
            at, _, timer = heapq.heappop(self._timers)
            self.t = max(self.t, at)
            if not timer.cancelled:
                timer.fn(*timer.args)
        self.t = end

    async def run_for(self, seconds: float, step: float = 0.05) -> None:
        """Advance in steps, letting the event loop run between them."""
        end = self.t + seconds
        while self.t < end:
            self.advance(min(step, end - self.t))
            await asyncio.sleep(0.002)
