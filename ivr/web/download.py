"""The console's report.csv download: an export thread renders it (over the blocks kept from
the last download, cache.KeptBlocks) into a Pipe the response reads, so the first rows leave
while the store still reads the others and memory stays bounded. As identity (the bytes of
`ivr report --format csv`), or when the client accepts it as one gzip member assembled from the
kept blocks' deflate segments (gzblocks): after a commit only the changed block is compressed,
and 33 MB of CSV cross the pipe, uvicorn and the network as ~3 MB."""
from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ivr.records.report import CSV_HEADER_BYTES
from ivr.store.base import Chunk
from ivr.web import service
from ivr.web.cache import KeptBlocks
from ivr.web.gzblocks import Blocks, GzipWriter, pack

_HEADER = pack(Chunk(0, 0, CSV_HEADER_BYTES))  # the CSV header's segment, made once


class Gone(Exception):
    """The client left: the producing thread stops."""


class Pipe:
    """Bytes (report.csv's blocks and batches, as the store rendered them) written by a
    producing thread, handed on in chunks of at least ~64 KB through a short queue: the
    download starts with the first rows, memory stays bounded."""
    CHUNK = 64 * 1024
    WAIT_S = 0.1  # a producer on a full queue checks this often whether the client left

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.gone = threading.Event()
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, chunk: bytes) -> None:
        if len(chunk) >= self.CHUNK:  # a kept block or segment: handed on as it is, no copy
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

    def put(self, item: Any) -> None:
        while not self.gone.is_set():  # a departed client must not hold the thread forever
            try:
                return self.q.put(item, timeout=self.WAIT_S)
            except queue.Full:
                continue
        raise Gone

    def close(self) -> None:
        """The response ended: a producer waiting on the full queue is released at once (it
        held one of the two export threads up to WAIT_S after a client left early)."""
        self.gone.set()
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass

    def get(self) -> Any:
        """The next chunk, None at the end, or the producer's exception; Gone once the
        response has ended (no pool thread waits forever on a queue nobody fills)."""
        while not self.gone.is_set():
            try:
                return self.q.get(timeout=0.5)
            except queue.Empty:
                continue
        raise Gone


def produce(pipe: Pipe, write: Any, done: Any = None, finally_: Any = None) -> None:
    try:
        write(pipe)
        pipe.flush()
        if done is not None:
            done()  # the whole download went out: what it rendered may be kept
        pipe.put(None)  # the end
    except Gone:
        pass
    except BaseException as exc:  # noqa: BLE001 - raised in the response: the download fails
        try:
            pipe.put(exc)
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


def keep_gzip(kept: KeptBlocks, campaign: str, fresh: Mapping[int, Chunk],
              writer: GzipWriter) -> None:
    """Keeps a gathering gzip download's blocks as a plain dict, and drops the writer's map
    of the segments from before it: `fresh` (Blocks) refers to the writer, whose `_by_id`
    holds every block and segment kept before this download (and the Pipe), so keeping it
    would keep replaced blocks (rows from before an erasure) alive outside MAX_BYTES."""
    kept.put(campaign, dict(fresh), writer.made)
    writer.release()


def report_csv(state: Any, campaign: str, gzip: bool) -> Response:
    """The streamed response; `state`: the app's (stores, kept_csv, exports)."""
    stores, kept = state.stores, state.kept_csv
    blocks = kept.get(campaign)
    gather = kept.start_keeping()
    pipe = Pipe()
    headers = {"Content-Disposition": 'attachment; filename="report.csv"',
               "Vary": "Accept-Encoding"}
    if gzip:
        writer = GzipWriter(pipe, kept.packed(campaign), (_HEADER,))
        fresh: dict[int, Chunk] = Blocks(writer, gather)

        def write(out: Any) -> None:
            service.write_report_csv_kept(stores.get(), campaign, writer, blocks, fresh,
                                          kept.MAX_BYTES if gather else None)
            writer.close()
        done = (lambda: keep_gzip(kept, campaign, fresh, writer)) if gather else None
        headers["Content-Encoding"] = "gzip"
    else:
        plain: dict[int, Chunk] | None = {} if gather else None

        def write(out: Any) -> None:
            service.write_report_csv_kept(stores.get(), campaign, out, blocks, plain,
                                          kept.MAX_BYTES)
        done = (lambda: kept.put(campaign, plain or {})) if gather else None
    state.exports.submit(produce, pipe, write, done, kept.stop_keeping if gather else None)

    async def body() -> Any:
        while True:
            item = await run_in_threadpool(pipe.get)
            if isinstance(item, bytes):
                yield item
            elif item is None:
                return
            else:
                raise item
    return Streamed(pipe, body(), media_type="text/csv; charset=utf-8", headers=headers)
