"""chromium's floor for report.csv, side by side in one run (bench_web --part latency).

The goal (p99 < 200 ms) is timed on chromium's download: from the click until the file is on
disk, which is chromium's own work (zstd decoding, its download manager writing 37.7 MB) as
much as the console's. This times, alternating in pairs with the same browser:
- `console`: report.csv from the console after a commit, as bench_web's chromium route does;
- `static`: the very bytes the console sent chromium for it (zstd, as captured once, with its
  Content-Type, Content-Disposition and Content-Encoding) served from memory by a plain HTTP
  server in this process (with a Content-Length, as a static file would be): no rendering, no
  store, nothing but the transfer and chromium.
Each pair's ratio console ÷ static is kept; reported: both sides' quantiles and the ratios'
median and range. `static` is what no server could beat on this machine with this browser.
"""
from __future__ import annotations

import gc
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import real_clients
import trace_web

KEPT_HEADERS = ("content-type", "content-disposition", "content-encoding")


class StaticBody:
    """One body with its headers, served at any path on a free loopback port."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        served = (body, headers)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                data, fields = served
                self.send_response(200)
                for k, v in fields.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass  # no line per request on the bench's stderr

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def captured(client: Any, path: str, accept_encoding: str = real_clients.ACCEPT_ENCODING
             ) -> tuple[bytes, dict[str, str]]:
    """report.csv's bytes as they crossed HTTP for chromium (its Accept-Encoding, as a browser
    sends it: Sec-Fetch-Mode), and the headers that make it a download of that coding."""
    with client.stream("GET", path, headers={"Accept-Encoding": accept_encoding,
                                             "Sec-Fetch-Mode": "navigate"}) as r:
        body = b"".join(r.iter_raw())
        if r.status_code >= 400:
            raise SystemExit(f"GET {path}: {r.status_code}")
        return body, {k: r.headers[k] for k in KEPT_HEADERS if k in r.headers}


def side_by_side(client: Any, browser: real_clients.Browser, path: str, store: Any,
                 pairs: int, accept_encoding: str | None = None) -> dict[str, Any]:
    """`pairs` pairs, the order alternating (console first in even pairs); before each
    console download, untimed, a commit to one of the last calls (as bench_web's route).
    `accept_encoding`: chromium's own replaced by it on both sides (gzip alone: what a browser
    without zstd gets; the static side then serves the console's gzip bytes)."""
    body, headers = captured(client, path, accept_encoding or real_clients.ACCEPT_ENCODING)
    static = StaticBody(body, headers)
    recent = store.last_call_id()
    times: dict[str, list[float]] = {"console": [], "static": []}
    saved: dict[str, int] = {}  # the bytes chromium wrote from each side, last time

    def once(side: str, i: int) -> None:
        if side == "console":
            store.set_hangup_cause(recent - i, "16" if i % 2 else "17")
        gc.collect()  # the harness's garbage, untimed (as bench_web)
        target = path if side == "console" else f"{static.url}/report.csv"
        times[side].append(browser.download(target, accept_encoding))
        saved[side] = browser.last["body_bytes"]  # the console's moves with its commits
    try:
        for side in ("console", "static"):  # untimed: each side's first download
            once(side, 0)
            times[side].clear()
        for i in range(1, pairs + 1):
            order = ("console", "static") if i % 2 == 0 else ("static", "console")
            for side in order:
                once(side, i)
    finally:
        static.close()
    ratios = sorted(c / s for c, s in zip(times["console"], times["static"]))
    return {"pairs": pairs, "wire_bytes": len(body), "encoding": headers.get(
                "content-encoding", "identity"), "body_bytes": saved,
            "console_ms": trace_web.quantiles(times["console"]),
            "static_ms": trace_web.quantiles(times["static"]),
            "console_over_static": {"median": round(statistics.median(ratios), 2),
                                    "min": round(ratios[0], 2), "max": round(ratios[-1], 2)}}
