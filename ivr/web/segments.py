"""report.csv compressed block by block, whatever the coding (gzblocks: gzip, zstdblocks:
zstd): each block of report.csv (base.Chunk) is compressed once into a segment that stands
alone, so a download after a commit compresses only the changed block and sends every other
block's segment as kept. Which coding a client gets is read from its Accept-Encoding here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ivr.store.base import Chunk


@dataclass(frozen=True)
class Packed:
    """One block's segment: `chunk` the block it was made from (kept while that very object
    is the block's), `seg` its compressed bytes; gzip's also `crc` of chunk.data and `shift`
    = gzblocks.shift_of(len(chunk.data)), to fold the member's CRC-32 (zstd needs neither)."""
    chunk: Chunk
    seg: bytes
    crc: int = 0
    shift: int = 0


def _qvalue(params: str) -> float:
    """A coding's weight from its parameters (RFC 9110 12.4.2): 1 unless q= says otherwise;
    a malformed or out-of-range q refuses (0)."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _weights(header: str | None) -> tuple[dict[str, float], float | None]:
    """Each named coding's best weight (x-gzip read as gzip), and "*"'s (None if absent)."""
    named: dict[str, float] = {}
    star: float | None = None
    for part in (header or "").split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        name = "gzip" if name == "x-gzip" else name
        if name == "*":
            star = max(star or 0.0, _qvalue(params))
        elif name:
            named[name] = max(named.get(name, 0.0), _qvalue(params))
    return named, star


def _gzip_weight(named: dict[str, float], star: float | None) -> float:
    return named["gzip"] if "gzip" in named else (star or 0.0)


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding value (RFC 9110 12.5.3) accepts gzip: gzip or its alias
    x-gzip named with q > 0 (every entry read, not the first), else "*" with q > 0 when
    neither is named; q=0 refuses. No header: identity (scripts get the plain bytes)."""
    return _gzip_weight(*_weights(header)) > 0


def choose_coding(header: str | None, browser: bool = True) -> str | None:
    """The coding report.csv goes out in: "zstd" to a `browser` that names it with q > 0, not
    below gzip's (chromium does: half the bytes, decoded sooner, zstdblocks); else
    "gzip" when accepted; else None, the identity bytes. "*" alone gets gzip, the older and
    safer guess. Not zstd to other clients: the body is one frame per block, and Python's
    decoders (httpx 0.28's, urllib3's) fail when a read ends exactly at a frame's end
    ("cannot use a decompressobj multiple times"); browsers' read frame after frame."""
    named, star = _weights(header)
    gzip, zstd = _gzip_weight(named, star), named.get("zstd", 0.0)
    if browser and zstd > 0 and zstd >= gzip:
        return "zstd"
    return "gzip" if gzip > 0 else None


def from_a_browser(headers: Any) -> bool:
    """Whether a request comes from a browser: they send Sec-Fetch-Mode with every request
    (Chrome 76, Firefox 90, Safari 16.4 on), scripts' HTTP libraries do not."""
    return "sec-fetch-mode" in headers


class SegmentWriter:
    """A binary writer (report.calls_csv_kept's `out`) that writes report.csv compressed to
    `out`: a piece that is the very bytes object of a packed block (`packed`, by identity)
    or of a `constant` piece goes out as its kept segment; the others (the blocks rendered
    now) are compressed as they come, a fresh compressor per run, ended at each block's end
    (`boundary`). `made` receives the segment of each block compressed here, to keep.
    A subclass gives the coding: its compressor, how a run ends, what frames the whole."""
    coding = ""
    LEVEL = 1  # the coding's compression level, unless given
    EMPTY: tuple[int, ...] = ()  # an empty block's Packed fields after its segment b""

    def __init__(self, out: BinaryIO, packed: Mapping[int, Packed],
                 constant: tuple[Packed, ...] = (), level: int | None = None) -> None:
        self.out, self.level = out, self.LEVEL if level is None else level
        self._by_id: dict[int, Packed] = {id(p.chunk.data): p for p in packed.values()}
        self._by_id.update((id(p.chunk.data), p) for p in constant)
        self.made: dict[int, Packed] = {}
        self._comp: Any = None
        self._parts: list[bytes] = []  # the run's segment, while it may be kept
        self.keeping = True  # False once nothing of this download is kept: _parts stays empty
        self._run_len = 0
        self._last: Packed | None = None  # the kept segment just sent, if the block's
        self.size = 0
        self._begin()

    # The coding's part.
    def _begin(self) -> None:
        """Writes what precedes the first segment."""

    def _compressor(self) -> Any:
        raise NotImplementedError

    def _finish(self, comp: Any) -> bytes:
        """The rest of a run's segment, which then stands alone."""
        raise NotImplementedError

    def _took_kept(self, p: Packed) -> None:
        """A kept segment went out."""

    def _took_fresh(self, data: bytes) -> None:
        """Fresh bytes went into the run."""

    def _fold_run(self, length: int) -> tuple[int, ...]:
        """The run of `length` bytes ended: its Packed fields after chunk and seg."""
        return ()

    def _end(self) -> None:
        """Writes what follows the last segment."""

    # The blocks.
    def write(self, data: bytes) -> None:
        if not data:
            return
        p = self._by_id.get(id(data))
        if p is not None and p.chunk.data is data:
            self._end_run()
            self.out.write(p.seg)
            self._took_kept(p)
            self.size += len(data)
            self._last = p
            return
        if self._comp is None:
            self._comp = self._compressor()
        self._last = None
        self._took_fresh(data)
        self._run_len += len(data)
        self._send(self._comp.compress(data))

    def _send(self, seg: bytes) -> None:
        if seg:
            if self.keeping:  # else streamed only: past the bound no run is held (memory)
                self._parts.append(seg)
            self.out.write(seg)

    def _end_run(self) -> tuple[bytes, int, tuple[int, ...]] | None:
        """Ends the run being compressed: (its segment, length, Packed fields), or None."""
        if self._comp is None:
            return None
        self._send(self._finish(self._comp))
        run = b"".join(self._parts), self._run_len, self._fold_run(self._run_len)
        self.size += self._run_len
        self._comp, self._parts, self._run_len = None, [], 0
        return run

    def boundary(self, block: int, chunk: Chunk) -> None:
        """`block` ended (as `chunk`): its segment is kept in `made` while `keeping`."""
        last, self._last = self._last, None
        run = self._end_run()
        if not self.keeping:
            return
        if run is not None and run[1] == len(chunk.data):
            self.made[block] = Packed(chunk, run[0], *run[2])
        elif run is None and last is not None and last.chunk is chunk:
            self.made[block] = last
        elif run is None and not chunk.data:
            self.made[block] = Packed(chunk, b"", *self.EMPTY)

    def close(self) -> None:
        self._end_run()
        self._end()

    def release(self) -> None:
        """The download is over: drops the map of the segments kept before it (they may be
        replaced blocks, which must not outlive the cache's own references)."""
        self._by_id = {}


class Blocks(dict):  # type: ignore[type-arg]
    """The `fresh` mapping export_calls_csv_kept fills at each block's end: tells `writer`
    where each block ends, and holds the blocks only if `keep` (the download that gathers).
    Whether it still keeps is the writer's `keeping`, the one flag both read."""

    def __init__(self, writer: SegmentWriter, keep: bool) -> None:
        super().__init__()
        self.writer = writer
        writer.keeping = keep  # a download that keeps nothing holds no run's segment

    def __setitem__(self, block: int, chunk: Chunk) -> None:
        self.writer.boundary(block, chunk)
        if self.writer.keeping:
            super().__setitem__(block, chunk)

    def clear(self) -> None:  # past the memory bound: nothing of this download is kept
        super().clear()
        self.writer.made.clear()
        self.writer.keeping = False  # no __setitem__ follows: stop holding runs
