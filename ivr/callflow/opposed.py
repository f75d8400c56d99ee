"""The oppositions written in the last minutes, for the IVR's check when a callee answers
(stage opposed-before-answer): the run's tick reads the rows added since its last read
(store.optouts_since, off the loop on PostgreSQL) and the handler only looks a number up here,
so an answered call never waits on the store."""
from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

# At its start the poll reads the oppositions of the last LOOKBACK_S (calls adopted from an
# earlier run were claimed before it); then only the rows past the highest id read. On a remote
# store an id is given at the insert, so a row may commit after a higher one was read: the ids
# skipped (gaps) are asked for again by id for OVERLAP_S. SQLite has one writer at a time: its
# ids come in commit order, nothing to ask again.
LOOKBACK_S = 300.0
OVERLAP_S = 60.0
# What was read longer ago is dropped: an opposition written before a call's claim was refused
# by the claim's own check, so on answer only those since the oldest call in flight was claimed
# matter: ringing (at most MAX_RING_TIMEOUT_S, 300 s), AMD and a queued session, with margin.
KEEP_S = 600.0
# Polls within MERGE_S of a batch's start add to it, so a steady stream of oppositions (an
# import beside a run) keeps a few batches, not one per poll (each look-up searches them all).
MERGE_S = 30.0
MAX_GAPS = 10_000  # ids skipped and still awaited: a bound, not a limit seen in practice

Batch = tuple[float, "array[int]"]


def _key(number_hash: str) -> int:
    """The first 64 bits of the keyed hash (HMAC-SHA256, hex): 8 bytes in a sorted array
    instead of a 64-character string and its set slot (~150 bytes). Another number sharing
    them by chance: ~n/2**64 per look-up (5e-14 with a million recent oppositions)."""
    return int(number_hash[:16], 16)


def _found(batches: tuple[Batch, ...], key: int) -> bool:
    """A binary search in each batch (at most KEEP_S / MERGE_S + 1 of them)."""
    for _, keys in batches:
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            return True
    return False


class Opposed:
    """The keyed hashes of the numbers put on the opposition list in the last KEEP_S. Stale by
    one poll (~0.5 s) at most while the store answers; while it is away, by the outage (the
    claim's own check still holds). A poll costs what it reads: each row is read once."""

    def __init__(self, overlap_s: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic, keep_s: float = KEEP_S) -> None:
        self.overlap_s, self.monotonic, self.keep_s = overlap_s, monotonic, keep_s
        # (when the batch began, its keys sorted), oldest first: a tuple replaced whole, so a
        # look-up on the loop never sees it change under it
        self.batches: tuple[Batch, ...] = ()
        self.polled = False  # the first read (LOOKBACK_S) done
        self.top = 0  # the highest id read
        self.gaps: dict[int, float] = {}  # id skipped below `top` -> when first missed
        self._lock = threading.Lock()  # two polls at once (a standby's and a tick's) queue

    def __contains__(self, number_hash: object) -> bool:
        return isinstance(number_hash, str) and _found(self.batches, _key(number_hash))

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self.batches)

    def poll(self, store: Any, now: datetime) -> None:
        """One read of the rows added since the last (in a worker thread on PostgreSQL);
        the store's error is the caller's: the next poll reads from the same point."""
        with self._lock:
            started = self.monotonic()
            # Dropped first: also while the store is away
            self.batches = tuple(b for b in self.batches if b[0] >= started - self.keep_s)
            self.gaps = {i: t for i, t in self.gaps.items() if t >= started - self.overlap_s}
            if not self.polled:
                rows = store.optouts_since(now - timedelta(seconds=LOOKBACK_S))
            else:
                rows = store.optouts_since(None, self.top, sorted(self.gaps))
            ids = sorted(int(r["id"]) for r in rows)
            self._add(started, (_key(r["number_hash"]) for r in rows))
            if self.polled and self.overlap_s > 0:
                self._note_gaps(ids, started)
            self.top = max([self.top, *ids[-1:]])
            self.polled = True

    def _add(self, started: float, keys: Iterable[int]) -> None:
        fresh = sorted(set(keys))
        if not fresh:
            return
        kept = self.batches
        if kept and kept[-1][0] >= started - MERGE_S:  # runs of sorted keys: a linear sort
            since, old = kept[-1]
            self.batches = (*kept[:-1], (since, array("Q", sorted({*old, *fresh}))))
        else:
            self.batches = (*kept, (started, array("Q", fresh)))

    def _note_gaps(self, ids: list[int], started: float) -> None:
        """The ids skipped between those read past `top`: asked for again until OVERLAP_S."""
        for i in ids:
            self.gaps.pop(i, None)
        prev = self.top
        for i in (i for i in ids if i > self.top):
            for gap in range(prev + 1, min(i, prev + 1 + MAX_GAPS)):
                self.gaps[gap] = started
            prev = i
        if len(self.gaps) > MAX_GAPS:  # the newest kept
            self.gaps = dict(sorted(self.gaps.items())[-MAX_GAPS:])
