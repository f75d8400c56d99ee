"""Benchmark: a call's store writes measured apart, one thread, no PBX (issue 14 item 7's
capacity, taken to pieces).

Each write of a call, in turn over `--calls` calls: the claim (a judge that allows everything),
a key's proof (`record_choice`), an answered call's outcome (`finish_answered`) on half the
calls, an unanswered one's (`finish_unanswered`, no answer, a retry planned on every other) on
the other half. For each: the program's CPU a call (this thread's, from `time.thread_time`,
what the controller's store threads spend) and, on PostgreSQL, the server's (its processes,
from /proc), and the wall time. No event loop and no sockets but the store's: this is the cost
the capacity bench (bench_capacity.py) cannot tell apart from its noise, and what a side-by-side
run of two commits compares (run it from a git worktree of each).

Prints one JSON object. Usage (no sandbox, no root needed for SQLite):
  python3 bench/bench_store_writes.py [--calls 3000] [--backend sqlite|postgresql]
PostgreSQL: a private cluster started for the run from Debian's postgresql package, as
`ivr db up` does (root), fsync on. Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_capacity  # noqa: E402  (its cluster, numbers and /proc reader)

from ivr.store.base import CallResult  # noqa: E402
from ivr.store.pg_cluster import PgCluster  # noqa: E402

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)
PG_PORT = 55492  # not bench_capacity's nor `ivr db up`'s: runs beside them
CONSENT = CallResult(outcome="message_played", stage="message", keys="1", heard={},
                     choice="consent", choice_key="1")


class _Allowed:
    allowed = True


def _timed(work: Iterable[Any], write: Callable[[Any], Any],
           server: Callable[[], float] | None) -> dict[str, float]:
    """This thread's CPU, the server's (PostgreSQL) and the wall time per write, in
    microseconds."""
    items = list(work)
    s0, c0, w0 = server() if server else 0.0, time.thread_time(), time.perf_counter()
    for item in items:
        write(item)
    n = max(len(items), 1)
    got = {"client_us": round((time.thread_time() - c0) / n * 1e6, 1),
           "wall_us": round((time.perf_counter() - w0) / n * 1e6, 1), "n": len(items)}
    if server:
        got["server_us"] = round((server() - s0) / n * 1e6, 1)
    return got


def open_store(backend: str, base: Path, port: int = PG_PORT
               ) -> tuple[Any, Callable[[], float] | None, PgCluster | None]:
    """A store under `base` (SQLite), or on a private cluster started there on `port`, with
    a reader of the server's CPU seconds (None for SQLite) and the cluster to stop."""
    if backend == "sqlite":
        from ivr.store.sqlite import Store
        return Store.open(base / "bench.db", optout_key=b"bench-key"), None, None
    from ivr.store.pg import PgStore
    cluster = PgCluster(base / "pg", port=port)
    store = PgStore.open(bench_capacity.postgres(cluster), optout_key=b"bench-key")
    pid = cluster.status().pid or 0
    return store, lambda: bench_capacity.tree_cpu_s(pid), cluster


def measure(calls: int, backend: str, base: Path) -> dict[str, Any]:
    store, server, cluster = open_store(backend, base)
    try:
        nums = bench_capacity.numbers(calls)
        for n in nums:
            store.add_contact(n, name=None, timezone=None, source="bench", basis="consent",
                              acquired_on=None, extra="{}", status="pending", now=NOW)
        store.bind_contacts(nums, campaign="c1", source="bench", basis="consent",
                            acquired_on=None, now=NOW)
        people = [dict(r) for r in store.pending_contacts("c1")]
        made: list[dict[str, Any]] = []

        def claim(person: dict[str, Any]) -> None:
            made.append(store.claim_attempt(
                person, campaign="c1", caller_id="+33162000000", node="n1", now=NOW,
                attempts_since=NOW - timedelta(days=30), refusals_since=NOW - timedelta(days=30),
                judge=lambda past: _Allowed()).call)
        out = {"claim_attempt": _timed(people, claim, server)}
        answered, unanswered = made[::2], made[1::2]
        out["record_choice"] = _timed(answered, lambda c: store.record_choice(
            c["id"], CONSENT, NOW), server)
        out["finish_answered"] = _timed(answered, lambda c: store.finish_answered(
            c["id"], CONSENT, NOW), server)
        out["finish_unanswered"] = _timed(
            enumerate(unanswered), lambda ic: store.finish_unanswered(
                ic[1]["id"], "no_answer", "19", NOW,
                NOW + timedelta(hours=2) if ic[0] % 2 else None), server)
        store.close()
    finally:
        if cluster is not None:
            cluster.down()
    return {"backend": backend, "calls": calls, **out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the cluster runs as the postgres user
        print(json.dumps(measure(args.calls, args.backend, Path(tmp))))


if __name__ == "__main__":
    main()
