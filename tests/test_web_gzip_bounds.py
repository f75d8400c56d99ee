"""Review fixes of the compressed report.csv download (ivr/web/segments.py, gzblocks.py,
zstdblocks.py, download.py), in either coding: past the keeping bound no compressed run is
held (memory stays bounded), the kept cache references nothing of a previous download's
blocks, and Accept-Encoding is read per RFC 9110."""
from __future__ import annotations

import contextlib
import gc
import gzip
import io
import random
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import zstandard

from ivr.records.report import CSV_HEADER_BYTES, calls_csv_kept
from ivr.store.kept_export import KeptExport
from ivr.web.cache import KeptBlocks
from ivr.web.download import WRITERS, keep_coded
from ivr.web.segments import Blocks, SegmentWriter, accepts_gzip

BLOCK = 256 * 1024  # bytes of one fake block (8 batches of 32 KB)


class FakeExport(KeptExport):
    """Blocks of incompressible bytes, all at version `gen` (a new gen changes every block)."""

    def __init__(self, blocks: int, batch: int = 32 * 1024, batches: int = 8) -> None:
        self.blocks, self.batch, self.batches, self.gen = blocks, batch, batches, 1
        self.rng = random.Random(7)

    def _read_snapshot(self) -> Any:
        return contextlib.nullcontext()

    def _chunk_versions(self, campaign: str | None) -> list[tuple[int, int]]:
        return [(b, self.gen) for b in range(self.blocks)]

    def _render_range(self, campaign: str | None, lo: int, hi: int, render: Any,
                      first: int) -> Iterator[tuple[bytes, int]]:
        for _ in range(self.batches):
            yield self.rng.randbytes(self.batch), 1


def peak_writer(coding: str) -> type[SegmentWriter]:
    class PeakWriter(WRITERS[coding][0]):  # type: ignore[valid-type,misc]
        """Records the most bytes of compressed run held at once (SegmentWriter._parts)."""
        peak = 0

        def _send(self, seg: bytes) -> None:
            super()._send(seg)
            self.peak = max(self.peak, sum(map(len, self._parts)))
    return PeakWriter


DECODE = {"gzip": gzip.decompress,
          "zstd": lambda body: zstandard.ZstdDecompressor().stream_reader(
              io.BytesIO(body), read_across_frames=True).read()}


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_past_the_keeping_bound_no_run_is_held(coding: str) -> None:
    """40 blocks of 256 KB, bound 2 MB: the blocks are dropped after ~8 and from then on the
    compressed runs must not pile up until close (before the fix: ~10 MB held)."""
    body = io.BytesIO()
    store = FakeExport(40)
    w = peak_writer(coding)(body, {}, (WRITERS[coding][1],))
    fresh = Blocks(w, True)
    calls = calls_csv_kept(store, w, "c", {}, fresh, 2 * 1024 * 1024)
    w.close()
    assert calls == 320 and len(fresh) == 0 and w.made == {}
    assert w.peak <= 2 * BLOCK, w.peak
    store.rng = random.Random(7)
    expect = CSV_HEADER_BYTES + b"".join(store.rng.randbytes(32 * 1024) for _ in range(320))
    assert DECODE[coding](body.getvalue()) == expect


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_download_that_keeps_nothing_holds_no_run(coding: str) -> None:
    w = peak_writer(coding)(io.BytesIO(), {}, (WRITERS[coding][1],))
    calls_csv_kept(FakeExport(6), w, "c", {}, Blocks(w, False), None)
    w.close()
    assert w.peak == 0


def _download(store: FakeExport, kb: KeptBlocks, rounds: list[Any], coding: str) -> None:
    """One gathering download as report_csv runs it; weak references to its blocks."""
    blocks, gather = kb.get("c"), kb.start_keeping()
    assert gather
    make, header = WRITERS[coding]
    w = make(io.BytesIO(), kb.packed("c", coding), (header,))
    fresh = Blocks(w, gather)
    calls_csv_kept(store, w, "c", blocks, fresh, kb.MAX_BYTES)
    w.close()
    keep_coded(kb, "c", fresh, w, kb.cleared())
    kb.stop_keeping()
    rounds.append([weakref.ref(c) for c in fresh.values()])


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_the_kept_cache_holds_nothing_of_replaced_blocks(coding: str) -> None:
    """Two downloads, every block changed in between: the first round's blocks (and their
    segments) are unreachable once the second is kept (before the fix the kept Blocks held
    its writer, whose map held every block and segment of the first round)."""
    store, kb, rounds = FakeExport(6, batches=2), KeptBlocks(), []
    _download(store, kb, rounds, coding)
    store.gen = 2
    _download(store, kb, rounds, coding)
    gc.collect()
    assert type(kb.get("c")) is dict and len(kb.get("c")) == 6
    assert [r() for r in rounds[0]] == [None] * 6
    assert all(r() is not None for r in rounds[1])
    assert sorted(kb.packed("c", coding)) == list(range(6))


@pytest.mark.parametrize(("header", "gz"), [
    ("*;q=0, gzip", True), ("x-gzip;q=0, gzip", True), ("gzip;q=0, x-gzip", True),
    ("gzip;level=1;q=0", False), ("gzip;level=1", True), ("gzip ; Q=0.5", True),
    ("gzip;q=0.000", False), ("gzip;q=0.001", True), ("gzip;q=abc", False),
    ("gzip;q=2", False), ("*;q=0", False), ("*;q=0.1", True), ("gzip;q=0, *", False),
    ("br, *;q=0.2", True), ("br, identity", False), ("", False), (" , ", False),
    ("x-gzip", True), ("deflate, X-GZIP;q=0.3", True), ("identity;q=0, *;q=0", False)])
def test_accept_encoding_per_rfc_9110(header: str, gz: bool) -> None:
    assert accepts_gzip(header) is gz


def test_past_the_bound_the_download_keeps_its_own_codings_segments() -> None:
    """Blocks fit, blocks with both codings' segments do not: the download that just made
    its coding's segments keeps them and lets the other coding's go (before, both went, so
    browsers' zstd and scripts' gzip downloads took turns compressing every block again)."""
    from ivr.store.base import Chunk
    from ivr.web.segments import Packed
    kb = KeptBlocks()
    kb.MAX_BYTES = 100
    blocks = {0: Chunk(0, 1, b"x" * 80)}
    kb.put("c", blocks, {0: Packed(blocks[0], b"g" * 12)}, coding="gzip")
    assert set(kb.packed("c", "gzip")) == {0}
    kb.put("c", blocks, {0: Packed(blocks[0], b"z" * 10)}, coding="zstd")
    assert set(kb.packed("c", "zstd")) == {0} and kb.packed("c", "gzip") == {}
    kb.put("c", blocks, {0: Packed(blocks[0], b"g" * 12)}, coding="gzip")
    assert set(kb.packed("c", "gzip")) == {0} and kb.packed("c", "zstd") == {}
    assert kb.get("c") is blocks
