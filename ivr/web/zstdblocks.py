"""report.csv as zstd (RFC 8878), one frame per block: zstd data is "one or more frames", so
the frames of the kept blocks and those compressed now, in order, are one valid body with no
header, trailer or checksum to fold (unlike gzip's CRC-32). A download after a commit
compresses only the changed block. Sent to browsers only (segments.choose_coding): chromium
asks for zstd, over plain HTTP to loopback too. On bench_web's report (300,000 calls, 37.7 MB)
the body is 2.5 MB instead of gzip's 5.6 MB, and chromium's download took 0.72-0.77 times as
long as the gzip one at the median (three runs). A frame made alone declares its block's size
as its window (~1 MB), one compressed as it comes the level's default (512 KB at level 1):
both within the 8 MB a browser's decoder allows (RFC 9659; a level above ~19 would not be,
tests/test_web_report_gzip.py checks each frame)."""
from __future__ import annotations

from typing import Any

import zstandard

from ivr.store.base import Chunk
from ivr.web.segments import Packed, SegmentWriter

LEVEL = 1  # zstd's fastest standard level: the first download compresses every block


def pack(chunk: Chunk, level: int = LEVEL) -> Packed:
    """A block's frame, made alone (its size in the frame header)."""
    return Packed(chunk, zstandard.ZstdCompressor(level=level).compress(chunk.data)
                  if chunk.data else b"")


class ZstdWriter(SegmentWriter):
    """report.csv as zstd frames (segments.SegmentWriter): each run compressed now ends its
    frame at its block's end; nothing precedes or follows the frames."""
    coding = "zstd"
    LEVEL = LEVEL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cctx = zstandard.ZstdCompressor(level=self.level)  # one context, many frames

    def _compressor(self) -> Any:
        return self._cctx.compressobj()

    def _finish(self, comp: Any) -> bytes:
        return comp.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)  # ends the frame
