"""The late Hangup of a call its IVR settled: written only when it changes the stored cause.

On the yes path the IVR's outcome stores cause 16 (normal clearing), then Asterisk's Hangup
says 16: writing it again changes nothing but costs a store round trip a call. The outcome is
written through the writer (safe_writes), so it may land after the Hangup: on PostgreSQL, from
a worker thread, it mostly did (892 of the sandbox's 1,000 calls were written twice). So:
- a Hangup that comes while its call's outcome write is queued is held for that write, which
  compares it with the cause it stored and writes it, in the same transaction, only if it
  differs (or if the attempt had its outcome already and nothing was stored);
- one that comes after is compared with the cause the write stored.
Bounded: a write dropped for good leaves an entry nobody takes; past the bound the oldest go,
and a Hangup that finds nothing is written, as before. Thread-safe: on a remote store the
outcome is written from a worker thread, the Hangups read on the loop.
"""
from __future__ import annotations

import threading
from collections import OrderedDict


def _put(entries: OrderedDict[str, str | None], key: str, value: str | None, limit: int
         ) -> None:
    entries[key] = value
    if len(entries) > limit:
        entries.popitem(last=False)


class StoredCauses:
    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._stored: OrderedDict[str, str | None] = OrderedDict()  # written: its cause
        self._queued: OrderedDict[str, str | None] = OrderedDict()  # a Hangup's cause held
        self._lock = threading.Lock()

    def queued(self, channel_id: str) -> None:
        """The outcome write of this channel's attempt is queued (not in the store yet)."""
        with self._lock:
            _put(self._queued, channel_id, None, self.limit)

    def recorded(self, channel_id: str, stored: str | None) -> str | None:
        """The queued write ran; `stored` is the cause it stored (None: the attempt had its
        outcome already, nothing written). The cause of a Hangup that came meanwhile, for the
        write to store itself when it differs; else None, and `stored` is kept for the Hangup
        still to come."""
        with self._lock:
            held = self._queued.pop(channel_id, None)
            if held is None and stored is not None:
                _put(self._stored, channel_id, stored, self.limit)
        return held if held != stored else None

    def settled_without_write(self, channel_id: str, cause: str) -> bool:
        """A Hangup of a call no longer in flight: True when it needs no write now, being
        held for its call's queued outcome write, or the cause that write stored."""
        with self._lock:
            if channel_id in self._queued:
                self._queued[channel_id] = cause
                return True
            return self._stored.pop(channel_id, None) == cause
