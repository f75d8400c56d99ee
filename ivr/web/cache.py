"""Values the console shows often and computes slowly (the overview's counts over every call of
a campaign, the preflight over its pending lists), kept per key: fresh ones are served as they
are, a stale one is served while one background thread computes the next, so no page waits on
an aggregate over the whole store and 50 open consoles cost one computation per interval, not
50. Only the first request for a key computes in line (and the others asking meanwhile wait for
it and share it). A write through the console drops the keys it changed; a value older than
`stale_max_s` is never served (computed in line instead), which bounds how long a write made
elsewhere (an erasure by `ivr gdpr erase`) can still be shown."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ivr.store.base import Chunk
from ivr.web.segments import Packed

Compute = Callable[[str], Any]  # key -> value; runs in the caller's or the worker's thread


@dataclass
class _Entry:
    value: Any = None
    at: float = float("-inf")
    ready: threading.Event = field(default_factory=threading.Event)
    refreshing: bool = False
    error: BaseException | None = None


class Refreshing:
    def __init__(self, compute: Compute, fresh_s: float, worker: ThreadPoolExecutor,
                 clock: Callable[[], float] = time.monotonic,
                 stale_max_s: float | None = None) -> None:
        self.compute, self.fresh_s, self.worker, self.clock = compute, fresh_s, worker, clock
        self.stale_max_s = stale_max_s
        self._lock = threading.Lock()
        self._kept: dict[str, _Entry] = {}

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._kept.get(key)
            first = entry is None or (self.stale_max_s is not None and entry.ready.is_set()
                                      and self.clock() - entry.at >= self.stale_max_s)
            if first:  # new, or too old to serve even once: computed in line
                entry = self._kept[key] = _Entry(refreshing=True)
            elif entry.ready.is_set() and self.clock() - entry.at >= self.fresh_s \
                    and not entry.refreshing:
                entry.refreshing = True
                self.worker.submit(self._refresh, key, entry)
        if first:
            self._refresh(key, entry)
        entry.ready.wait()
        if entry.error is not None and entry.value is None:
            err, entry.error = entry.error, None
            with self._lock:  # the next request tries again rather than failing forever
                if self._kept.get(key) is entry:
                    del self._kept[key]
            raise err
        return entry.value

    def _refresh(self, key: str, entry: _Entry) -> None:
        try:
            value = self.compute(key)
            entry.value, entry.error = value, None
            entry.at = self.clock()
        except BaseException as exc:  # noqa: BLE001 - kept for the waiting request
            entry.error = exc
        finally:
            entry.refreshing = False
            entry.ready.set()

    def drop(self, key: str) -> None:
        """The next request computes afresh (after a write that changed what `key` shows)."""
        with self._lock:
            self._drop(key)

    def drop_all(self) -> None:
        """Every key afresh: after an erasure, which any campaign's value may have shown (a
        stale one is served once while it refreshes, however long after)."""
        with self._lock:
            for key in list(self._kept):
                self._drop(key)

    def _drop(self, key: str) -> None:
        # Forgotten even while a refresh runs: that refresh, read before the write, lands in
        # an entry no longer kept, and the next request computes afresh (neither the old value
        # nor the refresh's is served after the write).
        self._kept.pop(key, None)


class Marked:
    """Values kept with the store's change marker read just before they were computed, and
    served again only while the marker has not moved: nothing was committed since, so the
    value is the one a computation now would give (never stale; any commit, even to another
    table, means one more computation). For what must stay exact, such as report.json."""

    def __init__(self, marker: Callable[[], str]) -> None:
        self.marker = marker
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[str, Any]] = {}
        self._cleared = 0  # clear()s so far: a value computed across one is not kept

    def get(self, key: str, compute: Callable[[], Any], mark: str | None = None) -> Any:
        """`mark`: a narrower marker read by the caller (store.calls_marker) instead of
        the store's."""
        if mark is None:
            mark = self.marker()  # before computing: a commit meanwhile moves it past `mark`
        with self._lock:
            hit, cleared = self._kept.get(key), self._cleared
        if hit is not None and hit[0] == mark:
            return hit[1]
        value = compute()
        with self._lock:
            if cleared == self._cleared:
                self._kept[key] = (mark, value)
        return value

    def clear(self) -> None:
        """Nothing kept, nor what a computation running now gives (after an erasure)."""
        with self._lock:
            self._kept.clear()
            self._cleared += 1


class KeptBlocks:
    """report.csv's blocks as last rendered, per campaign ({block: Chunk}, ivr/store/base.py): a
    download reuses each block whose version (call_chunks, schema 11) has not moved and the
    store renders only the others, so a download after a commit of a run renders one or two
    blocks of 8,192 calls instead of all 300,000 calls (1.6-2.0 s). Beside each block, its
    segment in each coding a download made it in (segments.Packed, gzip's or zstd's: kept while
    its block is the very Chunk it was made from). At most MAX_BYTES kept over every campaign,
    every form counted (the least recently downloaded dropped first). A download reads the
    kept blocks without copying them; one download at a time gathers the blocks to keep (N
    concurrent downloads must not hold N copies: the others stream only)."""
    MAX_BYTES = 96 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, Mapping[int, Chunk]] = OrderedDict()
        self._packed: dict[str, dict[str, Mapping[int, Packed]]] = {}  # campaign -> coding ->
        self._sizes: dict[str, int] = {}
        self._gathering = False
        self._cleared = 0  # clear()s so far: what a download rendered across one is not kept

    def get(self, key: str) -> Mapping[int, Chunk]:
        """The kept blocks (never changed in place: put replaces them), or none."""
        with self._lock:
            blocks = self._kept.get(key)
            if blocks is None:
                return {}
            self._kept.move_to_end(key)
            return blocks

    def packed(self, key: str, coding: str = "gzip") -> Mapping[int, Packed]:
        """The kept blocks' segments in `coding` (those made so far), or none."""
        with self._lock:
            return self._packed.get(key, {}).get(coding, {})

    def clear(self) -> None:
        """Nothing kept, nor what a download running now renders (after an erasure: a kept
        block held the number until its next download; its version had moved, so it was
        never served, only kept in memory)."""
        with self._lock:
            self._kept.clear()
            self._packed.clear()
            self._sizes.clear()
            self._cleared += 1

    def cleared(self) -> int:
        """What a download gives `put` (`since`), read before it reads the kept blocks."""
        with self._lock:
            return self._cleared

    def start_keeping(self) -> bool:
        """Whether the caller may gather the blocks to keep: one download at a time."""
        with self._lock:
            if self._gathering:
                return False
            self._gathering = True
            return True

    def stop_keeping(self) -> None:
        with self._lock:
            self._gathering = False

    def put(self, key: str, blocks: Mapping[int, Chunk],
            made: Mapping[int, Packed] | None = None, since: int | None = None,
            coding: str = "gzip") -> None:
        """Keeps `blocks`, with the segments of `made` (in `coding`) and those kept before, in
        any coding, whose block is still the same Chunk (an identity download after a gzip one
        loses none); nothing when cleared since `since` (cleared())."""
        with self._lock:
            if since is not None and since != self._cleared:
                return
            before = self._packed.get(key, {})
            packed: dict[str, dict[int, Packed]] = {}
            for c, segs in [*before.items(), *([(coding, made)] if made else [])]:
                packed.setdefault(c, {}).update(
                    (b, p) for b, p in segs.items() if blocks.get(b) is p.chunk)
            plain = sum(len(c.data) for c in blocks.values())
            size = plain + sum(map(_seg_bytes, packed.values()))
            if size > self.MAX_BYTES and len(packed) > 1:  # this download's coding only:
                packed = {coding: packed.get(coding, {})}  # browsers' and scripts' downloads
                size = plain + _seg_bytes(packed[coding])  # alternate
            if size > self.MAX_BYTES:  # the blocks alone, if they fit
                size, packed = plain, {}
            self._kept.pop(key, None)
            self._packed.pop(key, None)
            self._sizes.pop(key, None)
            if size > self.MAX_BYTES:
                return  # too big to keep: rendered whole each time
            self._kept[key], self._packed[key], self._sizes[key] = blocks, packed, size
            while sum(self._sizes.values()) > self.MAX_BYTES:
                gone, _ = self._kept.popitem(last=False)
                del self._sizes[gone], self._packed[gone]


def _seg_bytes(segs: Mapping[int, Packed]) -> int:
    return sum(len(p.seg) for p in segs.values())
