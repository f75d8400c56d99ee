"""A lean HTTP/1.1 GET for the benchmarks: one connection per request (Connection: close), the
response read to the end into one preallocated buffer with recv_into (no parsing per read),
then its framing checked once: Content-Length equal to the body's length, or the chunked
framing walked chunk by chunk (each size line, CRLF after each chunk, the last chunk 0). What
it times is the server and the transfer, with almost nothing of the client's own CPU: httpx
(what bench_web times) parses a 33 MB chunked body with h11 in Python, 64 KB a read."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

_BUF = 64 * 1024 * 1024  # a body larger than this is refused (the report.csv is ~33 MB)


_kept: list[bytearray] = []


def _buffer() -> bytearray:
    """One buffer for every request, allocated and touched once (a fresh 64 MB bytearray
    costs ~15 ms of zeroing and page faults: the client's time, not the server's)."""
    if not _kept:
        _kept.append(bytearray(_BUF))
    return _kept[0]


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body_bytes: int  # the body's length once unframed
    wire_bytes: int  # what crossed the socket after the header
    first_ms: float  # to the first bytes of the answer
    total_ms: float  # to the end of the body
    body: bytes | None = None  # the unframed body, when asked for (tests)


class FramingError(ValueError):
    pass


def get(host: str, port: int, path: str, headers: dict[str, str],
        keep_body: bool = False, timeout: float = 60.0) -> Fetched:
    """GET `path`; raises FramingError if the body's framing is broken or cut short."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    buf = _buffer()
    view = memoryview(buf)
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        n = sock.recv_into(view)
        first = time.perf_counter()
        got = n
        while n:
            if got == _BUF:
                raise FramingError(f"a body over {_BUF} bytes")
            n = sock.recv_into(view[got:])
            got += n
    end = time.perf_counter()
    status, head, start = _head(buf, got)
    body = view[start:got]
    if head.get("transfer-encoding", "").lower() == "chunked":
        size, data = _unchunk(buf, start, got, keep_body)
    else:
        size, data = len(body), bytes(body) if keep_body else None
        if "content-length" in head and int(head["content-length"]) != size:
            raise FramingError(f"Content-Length {head['content-length']}, body {size}")
    return Fetched(status, head, size, len(body), (first - t0) * 1000, (end - t0) * 1000, data)


def _head(buf: bytearray, got: int) -> tuple[int, dict[str, str], int]:
    end = buf.find(b"\r\n\r\n", 0, got)
    if end < 0:
        raise FramingError("no end of the header")
    status_line, *fields = bytes(buf[:end]).decode("latin-1").split("\r\n")
    head = {}
    for f in fields:
        k, _, v = f.partition(":")
        head[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), head, end + 4


def _unchunk(buf: bytearray, start: int, end: int, keep: bool) -> tuple[int, bytes | None]:
    """The body's length (buf[start:end]) from its chunked framing, walked without copying
    (the chunks joined only when `keep`)."""
    pos, size, parts = start, 0, []
    view = memoryview(buf)
    while True:
        eol = buf.find(b"\r\n", pos, end)
        if eol < 0:
            raise FramingError(f"no chunk size line at {pos - start}")
        n = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if n == 0:
            return size, b"".join(parts) if keep else None
        if pos + n + 2 > end or buf[pos + n:pos + n + 2] != b"\r\n":
            raise FramingError(f"chunk of {n} bytes at {pos - start} cut or not ended by CRLF")
        if keep:
            parts.append(bytes(view[pos:pos + n]))
        size, pos = size + n, pos + n + 2


def timed(client: Any, path: str, headers: dict[str, str]) -> float:
    """Milliseconds to the whole body of GET `path` on an httpx client's server, with its
    Authorization (bench_web's routes); SystemExit on an error status."""
    url = client.base_url
    f = get(url.host, url.port, path, {"Authorization": client.headers["authorization"],
                                       **headers})
    if f.status >= 400:
        raise SystemExit(f"GET {path}: {f.status}")
    return f.total_ms
