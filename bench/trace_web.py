"""bench_web's `--trace`: where a slow report.csv download loses its time, per request.

The console (bench_web's child) wraps its app in `ServerTrace`: for each report.csv request it
appends one JSON line (request in, first and last body send handed to uvicorn, the time spent
awaiting those sends, i.e. the client's pace, the process's CPU and its gc passes). The client
(`ClientTrace`) takes its own CPU (user, system), page faults and gc passes around each timed
request, outside the timed span, and `report` joins both sides in order: the server's span
(request in to last byte written) and what the client spent after it. Both sides read
time.perf_counter (CLOCK_MONOTONIC on Linux: one clock for both processes)."""
from __future__ import annotations

import json
import math
import resource
import statistics
import time
from typing import Any

from gc_passes import GcPasses, Pass

ENV = "IVR_BENCH_TRACE"  # the server's trace file; set in the console's environment


class ServerTrace:
    """ASGI wrapper: one JSON line per report.csv request into `path`."""

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.out, self.gc = app, open(path, "a"), GcPasses()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/report.csv"):
            return await self.app(scope, receive, send)
        t_in, cpu0 = time.perf_counter(), time.process_time()
        self.gc.take()
        sends: list[tuple[float, float]] = []

        async def timed_send(message: Any) -> None:
            t = time.perf_counter()
            await send(message)
            sends.append((t, time.perf_counter()))
        await self.app(scope, receive, timed_send)
        first = sends[1][0] if len(sends) > 1 else t_in  # sends[0]: the headers
        self.out.write(json.dumps({
            "t_in": t_in, "t_first": first, "t_out": sends[-1][1] if sends else t_in,
            "cpu_ms": (time.process_time() - cpu0) * 1e3, "sends": len(sends),
            "send_wait_ms": sum(b - a for a, b in sends) * 1e3, "gc": self.gc.take()}) + "\n")
        self.out.flush()


class ClientTrace:
    """The client's side of each timed request (call before() and after() around it)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.gc = GcPasses()

    def before(self) -> None:
        self.gc.take()
        self._ru, self._t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()

    def after(self, name: str, ms: float) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.rows.append({"route": name, "t0": self._t0, "ms": ms,
                          "user_ms": (ru.ru_utime - self._ru.ru_utime) * 1e3,
                          "sys_ms": (ru.ru_stime - self._ru.ru_stime) * 1e3,
                          "faults": ru.ru_minflt - self._ru.ru_minflt, "gc": self.gc.take()})


def quantiles(xs: list[float]) -> dict[str, float]:
    """p50, nearest-rank p99 and max, in ms to 0.1: the benches' one form (bench_web too)."""
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 1),
            "p99": round(xs[math.ceil(0.99 * len(xs)) - 1], 1), "max": round(xs[-1], 1)}


def _gc(passes: list[Pass]) -> dict[str, float]:
    return {"passes": len(passes), "gen2": sum(1 for p in passes if p[0] == 2),
            "ms": round(sum(p[1] for p in passes), 1)}


def report(client: ClientTrace, server_path: str, slowest: int = 3) -> dict[str, Any]:
    """Per route: quantiles of the server's span and of the client's time after it, and the
    slowest requests broken down. The server's lines pair with the client's timed requests by
    start time (each client request starts before its server line's t_in and after the
    previous one's end)."""
    with open(server_path) as f:
        lines = [json.loads(x) for x in f]
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["route"] for r in client.rows):
        rows = []
        for c in (r for r in client.rows if r["route"] == name):
            t1 = c["t0"] + c["ms"] / 1e3
            s = next((x for x in lines if c["t0"] <= x["t_in"] <= t1), None)
            if s is None:
                continue
            rows.append({"ms": round(c["ms"], 1),
                         "server_span_ms": round((s["t_out"] - s["t_in"]) * 1e3, 1),
                         "client_after_server_ms": round((t1 - s["t_out"]) * 1e3, 1),
                         "server_cpu_ms": round(s["cpu_ms"], 1),
                         "server_send_wait_ms": round(s["send_wait_ms"], 1),
                         "client_user_ms": round(c["user_ms"], 1),
                         "client_sys_ms": round(c["sys_ms"], 1), "client_faults": c["faults"],
                         "client_gc": _gc(c["gc"]), "server_gc": _gc(s["gc"])})
        if not rows:
            continue
        rows.sort(key=lambda r: -r["ms"])
        out[name] = {k: quantiles([r[k] for r in rows]) for k in
                     ("ms", "server_span_ms", "client_after_server_ms", "client_sys_ms")}
        out[name]["slowest"] = rows[:slowest]
    return out
