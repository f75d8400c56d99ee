"""Stopping a run: Ctrl-C and SIGTERM (systemd, `docker stop`) alike.

First signal: no new calls, calls in flight finish (for dialer.drain_timeout_s at most, see
run.CampaignRun._drain). Second: the calls are hung up and the process ends within
FORCE_EXIT_S whatever the PBX or the store does; what is left open is reconciled by the next
run, as after a SIGKILL. Third: at once. Should the event loop itself be stuck, a thread ends
the process LAST_RESORT_S after the second signal.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from ivr.errors import IvrError

log = logging.getLogger(__name__)
T = TypeVar("T")
FORCE_EXIT_S = 5.0    # after a second signal, the run has this long to end by itself
LAST_RESORT_S = 10.0  # ... and the process this long, even with its event loop stuck
EXIT_FORCED = 3       # the process's status when the last resort ends it
# SIGHUP too: a dropped ssh session or a habitual `kill -HUP` killed the run mid-call (the
# default action), and the next run called those people again
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(IvrError):
    """The run was ended by a second signal, or a stop gave up on calls. `left_open`: calls
    had not all ended (the next run reconciles them); False: every call had ended, and only
    the run's own end (its last plan's summary) was cut short."""

    def __init__(self, message: str, left_open: bool = True) -> None:
        super().__init__(message)
        self.left_open = left_open


class Stopper:
    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.stop = stop or asyncio.Event()  # no new calls
        self.hard = asyncio.Event()          # hang up the calls in flight
        # a second signal from the operator (not the drain's timeout nor the console's hard
        # stop, which also set `hard`): the end's waits for the opposition line are cut short
        self.again = asyncio.Event()
        self.forced = asyncio.Event()        # end now, whatever is left
        self._loop = asyncio.get_running_loop()
        self._timer: threading.Timer | None = None
        self._installed: list[int] = []
        # The operator's signals so far: a stop set by another hand (the carrier breaker, the
        # console) must not make the first Ctrl-C the second, which hangs every call up.
        self._signals = 0

    def install(self) -> None:
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self.on_signal)
            self._installed.append(sig)

    def on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1 and not self.hard.is_set():
            log.warning("stopping: no new calls; calls in flight finish (again: hang up)")
            self.stop.set()
        elif not self.hard.is_set() or self._timer is None:
            log.warning("stopping now: hanging up the calls in flight")
            self.hard.set()
            self.again.set()
            self._loop.call_later(FORCE_EXIT_S, self.forced.set)
            self._arm_last_resort()
        else:
            self.forced.set()

    def _arm_last_resort(self) -> None:
        def end() -> None:  # runs on its own thread: the event loop may be stuck
            sys.stderr.write(f"error: the run did not end within {LAST_RESORT_S:g} s of the "
                             "second signal: exiting; the next `ivr run` reconciles the calls "
                             "left open\n")
            sys.stderr.flush()
            os._exit(EXIT_FORCED)
        self._timer = threading.Timer(LAST_RESORT_S, end)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """The run is over: the signals go back to their defaults, the last resort is off."""
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)
        self._installed.clear()
        if self._timer is not None:
            self._timer.cancel()

    async def until_done(self, task: asyncio.Future[T], open_calls: Callable[[], int]) -> T:
        """The run's result, or Interrupted once `forced` is set (the run is cancelled).
        `open_calls`: how many calls are still in flight, for its words: a second Ctrl-C
        while the run read its last plan (seconds at a million contacts) said calls were
        left open when none was."""
        forced = asyncio.ensure_future(self.forced.wait())
        try:
            await asyncio.wait({task, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if task.done():
            return task.result()
        left = open_calls()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        if left == 0:
            raise Interrupted("stopped by a second signal while the run was ending: every call "
                              "had ended (only its last summary was not read)", left_open=False)
        raise Interrupted("stopped by a second signal before every call had ended: the next "
                          "`ivr run` reconciles the attempts left open")
