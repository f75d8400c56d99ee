"""report.csv block by block, the same way on both backends: a block (the calls whose id >> 13
is equal) the caller kept is sent as it is while the store's version of it is unchanged, the
others rendered again (schema 11's call_chunks). The backends give the primitives."""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # base imports this module (Chunk): the row type only for annotations
    from ivr.store.base import Row

BLOCK_SHIFT = 13  # report.csv's blocks: the calls whose id >> 13 is equal (schema 11)


@dataclass(frozen=True)
class Chunk:
    """One block of report.csv as rendered at `version` (call_chunks, schema 11): its `rows`
    calls' lines, `data` in UTF-8."""
    version: int
    rows: int
    data: bytes


class KeptExport:
    """report.csv per block over a caller's kept blocks, the same way on both backends over
    their own primitives: `_read_snapshot` (one read snapshot for the versions and the lines),
    `_chunk_versions` (block, version) in block order, `_render_range` (the lines of the calls
    with ids in [lo, hi] as (bytes, calls) batches, the first of at most `first` calls)."""
    FIRST_BATCH = 1000  # the download's first rendered batch: its first byte leaves early

    def _read_snapshot(self) -> AbstractContextManager[None]: ...
    def _chunk_versions(self, campaign: str | None) -> list[tuple[int, int]]: ...
    def _render_range(self, campaign: str | None, lo: int, hi: int,
                      render: Callable[[Row], str], first: int
                      ) -> Iterator[tuple[bytes, int]]: ...

    def calls_marker(self, campaign: str | None) -> str:
        """Moves whenever a call of the campaign changes: its blocks' versions, which the kept
        blocks trust too. Unlike change_marker, a commit elsewhere (a run's snapshot, each
        second) leaves it: what is read from the calls alone is kept across those."""
        return repr(self._chunk_versions(campaign))

    def export_calls_csv_kept(self, campaign: str | None, render: Callable[[Row], str],
                              kept: Mapping[int, Chunk], out: dict[int, Chunk] | None,
                              out_max: int | None = None) -> Generator[bytes, None, int]:
        """export_calls_csv's bytes, block by block: a block of `kept` whose version is the
        store's is sent as it is, the others are rendered (and streamed batch by batch). `out`
        (unless None) receives every block, for the caller to keep instead of `kept`; emptied
        and no longer filled once its blocks pass `out_max` bytes (memory stays bounded).
        The versions are read before any line (`_read_snapshot`: on SQLite one snapshot for
        all; on PostgreSQL none, see pg_export): a block changed after its version was read
        is kept under that older version, so the next download renders it again. Returns how
        many calls."""
        count, first, size = 0, self.FIRST_BATCH, 0
        with self._read_snapshot():
            for block, version in self._chunk_versions(campaign):
                chunk = kept.get(block)
                if chunk is None or chunk.version != version:
                    parts: list[bytes] = []
                    rows = 0
                    lo = block << BLOCK_SHIFT
                    for data, n in self._render_range(campaign, lo, lo + (1 << BLOCK_SHIFT) - 1,
                                                      render, first):
                        first, rows = 1 << 30, rows + n
                        if out is not None:
                            parts.append(data)
                        yield data
                    chunk = Chunk(version, rows, b"".join(parts))
                elif chunk.data:
                    first = 1 << 30  # the first byte is out: full batches from now on
                    yield chunk.data
                count += chunk.rows
                if out is not None:
                    out[block], size = chunk, size + len(chunk.data)
                    if out_max is not None and size > out_max:
                        out.clear()  # too big to keep: the caller keeps nothing of it
                        out = None
        return count
