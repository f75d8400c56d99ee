"""The console's report.csv download: an export thread renders it (over the blocks kept from
the last download, cache.KeptBlocks) into a Pipe the response reads, so the first rows leave
while the store still reads the others and memory stays bounded. As identity (the bytes of
`ivr report --format csv`), or compressed from the kept blocks' segments when the client
accepts it (segments.choose_coding): zstd frames (zstdblocks) or one gzip member (gzblocks).
After a commit only the changed block is compressed, and 38 MB of CSV cross the pipe, uvicorn
and the network as ~5-6 MB."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import Response, StreamingResponse

from ivr.records.report import CSV_HEADER_BYTES
from ivr.store.base import Chunk
from ivr.web import gzblocks, service, zstdblocks
from ivr.web.cache import KeptBlocks
from ivr.web.segments import Blocks, SegmentWriter

log = logging.getLogger(__name__)
_CSV_HEADER = Chunk(0, 0, CSV_HEADER_BYTES)
# coding -> (its writer, the CSV header's segment, made once)
WRITERS: dict[str, tuple[type[SegmentWriter], Any]] = {
    "gzip": (gzblocks.GzipWriter, gzblocks.pack(_CSV_HEADER)),
    "zstd": (zstdblocks.ZstdWriter, zstdblocks.pack(_CSV_HEADER))}


class Gone(Exception):
    """The client left: the producing thread stops."""


class Stalled(Gone):
    """The client stopped reading (connected, nothing taken for Pipe.STALL_S): the producing
    thread stops, and the response ends in this error (a cut body, never one that looks
    whole) if the client reads again."""


class Pipe:
    """Bytes (report.csv's blocks and batches, as the store rendered them) written by a
    producing thread, handed on in chunks of at least ~64 KB, in order: the download starts
    with the first rows, memory stays bounded. Only the fresh chunks (rendered now) count
    against the room (ROOM in flight): a kept block (one of `kept`, by identity) costs no
    memory (the cache holds it anyway), so the producer hands every kept block on at once
    and goes on to render the changed ones while the response sends the kept ones (before,
    a full queue of kept blocks held the render back until the client had read them)."""
    CHUNK = 64 * 1024
    ROOM = 8  # fresh chunks in flight at most
    WAIT_S = 0.1  # a producer with no room checks this often whether the client left
    # A client still connected that took nothing for this long has stopped reading (a paused
    # download, a stalled script): the producer gives up. It held the export thread (one of
    # two) and, on SQLite, a read snapshot: no checkpoint, a WAL growing with every commit of
    # the run, an erasure left in the -wal. Long enough for a kept block (~1 MB identity) to
    # cross a slow link (~9 KB/s).
    STALL_S = 120.0

    def __init__(self, kept: Iterable[bytes] = ()) -> None:
        self.q: queue.Queue[Any] = queue.Queue()  # unbounded: the room bounds it (fresh)
        self._room = threading.Semaphore(self.ROOM)
        self._kept = {id(b): b for b in kept}
        self.gone = threading.Event()
        self._buf: list[bytes] = []
        self._size = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._waiting = False  # the response waits for an item (set on its loop)
        self.taken_at = time.monotonic()  # when the response last took an item

    def _is_kept(self, item: Any) -> bool:
        return self._kept.get(id(item)) is item

    def write(self, chunk: bytes) -> None:
        if self._is_kept(chunk):  # the kept bytes object itself: no copy, no room
            self.flush()
            self.put(chunk, fresh=False)
            return
        if len(chunk) >= self.CHUNK:  # a rendered batch or segment: handed on as it is
            self.flush()
            self.put(chunk)
            return
        self._buf.append(chunk)
        self._size += len(chunk)
        if self._size >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.put(self._buf[0] if len(self._buf) == 1 else b"".join(self._buf))
            self._buf, self._size = [], 0

    def put(self, item: Any, fresh: bool = True) -> None:
        """Hands `item` on (a fresh one once there is room); Gone once the response ended."""
        while fresh and not self._room.acquire(timeout=self.WAIT_S):
            if self.gone.is_set():  # a departed client must not hold the thread forever
                raise Gone
            if time.monotonic() - self.taken_at > self.STALL_S:  # nor one that stopped reading
                raise Stalled(f"report.csv: the client read nothing for {self.STALL_S:.0f} s: "
                              "download stopped")
        if self.gone.is_set():
            raise Gone
        self.q.put(item)
        if self._waiting and self._loop is not None:  # the response sleeps: wake it
            try:
                self._loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the loop is closed: the server stops
                raise Gone from None

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def close(self) -> None:
        """The response ended: a producer waiting for room is released at once (it held one
        of the two export threads up to WAIT_S after a client left early)."""
        self.gone.set()
        self._kept = {}  # what this download held of the cache, let go with it
        self._room.release(self.ROOM)
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass

    def _taken(self, item: Any) -> Any:
        self.taken_at = time.monotonic()
        if isinstance(item, bytes) and not self._is_kept(item):
            self._room.release()  # a fresh chunk left the pipe
        return item

    async def aget(self) -> Any:
        """The next chunk, None at the end, or the producer's exception, read on the
        response's event loop with no thread hop per chunk: the producer wakes the loop only
        when the response waits for it (a response that ends cancels the wait)."""
        if self._wake is None:
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while True:
            try:
                return self._taken(self.q.get_nowait())
            except queue.Empty:
                pass
            self._wake.clear()
            self._waiting = True  # before the second look: a put after it wakes us
            try:
                return self._taken(self.q.get_nowait())
            except queue.Empty:
                await self._wake.wait()
            finally:
                self._waiting = False


def produce(pipe: Pipe, write: Any, done: Any = None, finally_: Any = None) -> None:
    try:
        write(pipe)
        pipe.flush()
        if done is not None:
            done()  # the whole download went out: what it rendered may be kept
        pipe.put(None, fresh=False)  # the end
    except Stalled as exc:
        log.warning("%s (its export thread and the store's read are released)", exc)
        try:
            # A client that reads again gets a cut body, not one that looks whole; a new error,
            # without the traceback's frames (and what they hold) kept in the queue.
            pipe.put(Stalled(str(exc)), fresh=False)
        except Gone:
            pass
    except Gone:
        pass
    except BaseException as exc:  # noqa: BLE001 - raised in the response: the download fails
        try:
            pipe.put(exc, fresh=False)
        except Gone:
            pass
    finally:
        if finally_ is not None:
            finally_()


class Streamed(StreamingResponse):
    """Ends its pipe however the response ends (done, failed, or the client left while a
    chunk was being sent: then the body generator is not closed until collected)."""

    def __init__(self, pipe: Pipe, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipe = pipe

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.pipe.close()


def keep_coded(kept: KeptBlocks, campaign: str, fresh: Mapping[int, Chunk],
               writer: SegmentWriter, since: int) -> None:
    """Keeps a gathering compressed download's blocks as a plain dict, and drops the writer's map
    of the segments from before it: `fresh` (Blocks) refers to the writer, whose `_by_id`
    holds every block and segment kept before this download (and the Pipe), so keeping it
    would keep replaced blocks (rows from before an erasure) alive outside MAX_BYTES."""
    kept.put(campaign, dict(fresh), writer.made, since, writer.coding)
    writer.release()


def report_csv(state: Any, campaign: str, coding: str | None) -> Response:
    """The streamed response, in `coding` ("zstd", "gzip", or None: identity); `state`: the
    app's (stores, kept_csv, exports)."""
    stores, kept = state.stores, state.kept_csv
    since = kept.cleared()  # an erasure during the download: what it renders is not kept
    blocks = kept.get(campaign)
    gather = kept.start_keeping()
    packed = kept.packed(campaign, coding) if coding else {}
    # What the pipe may pass on without room: the kept bytes this download sends as they are.
    pipe = Pipe([p.seg for p in packed.values()] if coding else
                [c.data for c in blocks.values()])
    headers = {"Content-Disposition": 'attachment; filename="report.csv"',
               "Vary": "Accept-Encoding"}
    if coding:
        make, header = WRITERS[coding]
        writer = make(pipe, packed, (header,))
        fresh: dict[int, Chunk] = Blocks(writer, gather)

        def write(out: Any) -> None:
            service.write_report_csv_kept(stores.get(), campaign, writer, blocks, fresh,
                                          kept.MAX_BYTES if gather else None)
            writer.close()
        done = (lambda: keep_coded(kept, campaign, fresh, writer, since)) if gather else None
        headers["Content-Encoding"] = coding
    else:
        plain: dict[int, Chunk] | None = {} if gather else None

        def write(out: Any) -> None:
            service.write_report_csv_kept(stores.get(), campaign, out, blocks, plain,
                                          kept.MAX_BYTES)
        done = (lambda: kept.put(campaign, plain or {}, since=since)) if gather else None
    state.exports.submit(produce, pipe, write, done, kept.stop_keeping if gather else None)

    async def body() -> Any:
        while True:
            item = await pipe.aget()
            if isinstance(item, bytes):
                yield item
            elif item is None:
                return
            else:
                raise item
    return Streamed(pipe, body(), media_type="text/csv; charset=utf-8", headers=headers)
