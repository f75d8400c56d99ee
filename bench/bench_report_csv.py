"""Benchmark: where one report.csv download after a commit spends its time (issue 15 item 6).

Over bench_web's store (100,000 contacts, 300,000 calls) and console (uvicorn in a child
process), each timed download follows a commit to one of the last calls (the console renders
that block again, the others are kept). The same identity download is timed with three
clients in turn: httpx (what bench_web times), bench/lean_http.py (recv_into one buffer,
framing checked once) and `curl -s -o /dev/null`; and, for the transfer alone, the lean client
with nothing committed (every block kept). Per download: wall time, the client's CPU, and the
console's CPU from /proc (schedstat, ns) split into its event loop's thread (HTTP framing,
socket writes) and its other threads (the export thread's render of the changed block).
Prints one JSON object: medians and maxima per client.

Usage: python3 bench/bench_report_csv.py [--requests 20]
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_capacity  # noqa: E402
import bench_web  # noqa: E402
import lean_http  # noqa: E402

from ivr import app  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402


def threads_ms(pid: int) -> tuple[float, float]:
    """CPU milliseconds so far of the process's main thread (the event loop) and the others."""
    loop = rest = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ms = int(f.read().split()[0]) / 1e6
        except OSError:  # a thread that ended meanwhile
            continue
        if tid == str(pid):
            loop += ms
        else:
            rest += ms
    return loop, rest


def clients(url: str, path: str, token: str) -> dict[str, Callable[[], tuple[int, float]]]:
    """name -> one identity download: (body bytes, client CPU ms)."""
    import httpx
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
    port = int(url.rsplit(":", 1)[1])
    hdr = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}

    def with_httpx() -> tuple[int, float]:
        c0 = time.thread_time()
        with client.stream("GET", path, headers={"Accept-Encoding": "identity"}) as r:
            r.read()
        return len(r.content), (time.thread_time() - c0) * 1000

    def lean() -> tuple[int, float]:
        c0 = time.thread_time()
        f = lean_http.get("127.0.0.1", port, path, hdr)
        return f.body_bytes, (time.thread_time() - c0) * 1000

    def curl() -> tuple[int, float]:
        p = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                              "-H", f"Authorization: Bearer {token}", "-H",
                              "Accept-Encoding: identity", url + path], stdout=subprocess.PIPE)
        assert p.stdout is not None
        out = p.stdout.read()
        _, _, ru = os.wait4(p.pid, 0)
        return int(out), (ru.ru_utime + ru.ru_stime) * 1000
    return {"httpx": with_httpx, "lean client": lean, "curl": curl,
            "lean client, nothing committed": lean}


def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    def med(k: str) -> float:
        return round(statistics.median(r[k] for r in rows), 1)
    return {"wall_p50_ms": med("wall"), "wall_max_ms": round(max(r["wall"] for r in rows), 1),
            "client_cpu_p50_ms": med("client"), "server_loop_cpu_p50_ms": med("loop"),
            "server_other_threads_cpu_p50_ms": med("rest"), "server_cpu_p50_ms": med("server"),
            "body_bytes": int(rows[-1]["bytes"])}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    cfg = bench_web.bench_cfg(tmp, 50)
    build_prompts(cfg)
    store = app.open_store(cfg)
    bench_web.seed_big(store, cfg.campaign.name, 100_000, 300_000)
    token = bench_web.admin_token(store)
    web, url = bench_web.start_web(tmp, 50)
    path = f"/api/campaigns/{cfg.campaign.name}/report.csv"
    recent = store.last_call_id()
    rows: dict[str, list[dict[str, float]]] = {}
    try:
        todo = clients(url, path, token)
        for do in todo.values():
            do()  # the first download renders every block; then each client once, warm
        for i in range(args.requests):
            for k, (name, do) in enumerate(todo.items()):
                if "nothing committed" not in name:
                    store.set_hangup_cause(recent - (4 * i + k) % 64, "16" if i % 2 else "17")
                time.sleep(0.03)  # the commit settled; the console idle
                loop0, rest0 = threads_ms(web.pid)
                t0 = time.perf_counter()
                size, client_ms = do()
                wall = (time.perf_counter() - t0) * 1000
                time.sleep(0.01)  # the export thread's last bookkeeping, counted
                loop1, rest1 = threads_ms(web.pid)
                rows.setdefault(name, []).append(
                    {"wall": wall, "client": client_ms, "loop": loop1 - loop0,
                     "rest": rest1 - rest0, "server": loop1 - loop0 + rest1 - rest0,
                     "bytes": size})
    finally:
        web.terminate()
        web.wait(10)
    return {"requests": args.requests, "clients": {k: summary(v) for k, v in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20, help="timed downloads per client")
    args = parser.parse_args()
    os.environ["IVR_AMI_SECRET"] = bench_capacity.SECRET
    os.environ.setdefault("IVR_CALLBACK_SECRET", bench_capacity.SECRET)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
