"""Ctrl-C and SIGTERM held off a store write for the few milliseconds it takes (imports).

A signal that lands while a transaction commits cuts it where its outcome is unknown to the
code: on PostgreSQL, while COMMIT's reply is awaited, the rows are kept but the import counted
them as unwritten. Held, the signal is delivered once the transaction has ended, committed or
rolled back, so the counts and the audit row match the store."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held(deliver: bool = True) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs; a second one passes at once (a lock wait
    may be long: an operator pressing again means now). Held, it goes to its own handler when
    the block ends normally (`deliver`), or is dropped: when the block raises (that error is
    the one to report), or with deliver=False, for the last writes of an import that is
    stopping anyway. Only the main thread receives signals (a console import runs in a worker:
    nothing to hold), and a handler set outside Python is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            any(signal.getsignal(sig) is None for sig in SIGNALS):
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, _frame: Any) -> None:
        held.append(signum)
        if len(held) > 1:
            _restore(previous)
            signal.raise_signal(signum)

    try:
        for sig in SIGNALS:  # each recorded as it is set: restored even if cut in between
            previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        _restore(previous)
    if deliver and len(held) == 1:
        signal.raise_signal(held[0])


def _restore(previous: dict[int, Any]) -> None:
    """The handlers back, all of them even if a signal raises between two (the second loop)."""
    try:
        while previous:
            sig, handler = previous.popitem()
            signal.signal(sig, handler)
    finally:
        while previous:
            sig, handler = previous.popitem()
            signal.signal(sig, handler)
