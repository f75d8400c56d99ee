"""A budget of log lines per kind of event: FastAGI takes connections from any local process,
and each refused one was a line (a script name of 16 KB each, 26 MB of log a second from one
user: the disk filled, the opposition line's failsafe alarm buried). Past the budget a line is
counted, not written, and the next line written says how many were not."""
from __future__ import annotations

import time
from collections.abc import Callable

LINES_PER_WINDOW = 20
WINDOW_S = 60.0


class LogBudget:
    def __init__(self, lines: int = LINES_PER_WINDOW, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lines, self.window_s, self.clock = lines, window_s, clock
        self._window: dict[str, tuple[float, int]] = {}  # key -> (start, lines written)
        self._skipped: dict[str, int] = {}

    def take(self, key: str) -> str | None:
        """None when this line is over the budget (counted); else the suffix to write after
        it: empty, or how many lines of its kind were left out before it."""
        now = self.clock()
        start, written = self._window.get(key, (now, 0))
        if now - start >= self.window_s:
            start, written = now, 0
        if written >= self.lines:
            self._window[key] = (start, written)
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        self._window[key] = (start, written + 1)
        skipped = self._skipped.pop(key, 0)
        return f" ({skipped} more like it not logged, over {self.lines} a minute)" \
            if skipped else ""
