"""Benchmark: the web console's latency on PostgreSQL (issue 15). Prints one JSON object.

bench_web.py's `latency` part with a PostgreSQL store (`store.url`) instead of SQLite: the
same routes, the same timing (one first request per route, then `--requests` timed ones, 10
for a route whose first answer took over 500 ms), the same store shape (100,000 contacts bound
to the campaign, a tenth pending, 300,000 calls over the last ten days, a consent per message
played). The store is a private PostgreSQL cluster started for the run from Debian's binaries
(ivr/store/pg_cluster.py, as `ivr db up`: loopback only, fsync on, a temporary data directory),
stopped and removed at the end. It is seeded in SQL (generate_series: seconds, not minutes),
then ANALYZEd, as autovacuum would have done on a store that grew by use. The console runs
in a child process served by uvicorn, as `ivr web`; the password reaches it through
IVR_STORE_PASSWORD (never on a command line or in the URL).

Usage (root, no sandbox):
  python3 bench/bench_web_pg.py                      # 100,000 contacts, 300,000 calls
  python3 bench/bench_web_pg.py --contacts 10000 --calls-in-store 30000 --requests 20
  python3 bench/bench_web_pg.py --only erase         # the routes whose name holds 'erase'
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_web  # noqa: E402  (routes, timing, the config, the admin token)

from ivr import app  # noqa: E402
from ivr.config import Config  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.store.base import utc  # noqa: E402
from ivr.store.pg_cluster import PgCluster, port_free  # noqa: E402

PG_PORT = 55500  # the first port tried; the next free one after it otherwise
OUTCOMES = bench_web.OUTCOMES


def pg_cfg(base: Path, url: str) -> Config:
    cfg = bench_web.bench_cfg(base, 50)
    return dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path="", url=url))


def start_cluster(base: Path) -> PgCluster:
    """A private cluster on the first free port from PG_PORT; its password where the store
    reads it (IVR_STORE_PASSWORD, inherited by the console's process)."""
    for port in range(PG_PORT, PG_PORT + 40):
        if port_free(port):
            cluster = PgCluster(base, port)
            cluster.up()
            os.environ["IVR_STORE_PASSWORD"] = cluster.password()
            return cluster
    raise SystemExit(f"no free port for PostgreSQL from {PG_PORT}")


# The seed, in SQL (bench/ may hold SQL: it drives the store as a test does). Rows in the
# order bench_web.seed_big writes them, so ids, numbers and timestamps are the same.
SEED = [
    "INSERT INTO contacts (number, source, basis, status, created_at, updated_at) "
    "SELECT '+331' || (90000000 + i)::text, 'list' || mod(i, 5)::text, 'consent', "
    "CASE WHEN mod(i, 10) = 0 THEN 'pending' ELSE 'done' END, %(ts)s, %(ts)s "
    "FROM generate_series(0, %(contacts)s - 1) i ORDER BY i",
    "INSERT INTO campaign_contacts (contact_id, campaign, source, basis, status, bound_at) "
    "SELECT id, %(c)s, source, basis, status, %(ts)s FROM contacts ORDER BY id",
    "INSERT INTO calls (contact_id, number, attempt, campaign, state, started_at, ended_at, "
    "outcome, keys, node) SELECT k.id, k.number, i / %(contacts)s + 1, %(c)s, 'ended', s.at, "
    "s.at, (%(outcomes)s::text[])[mod(i, %(n_out)s) + 1], "
    "CASE WHEN mod(i, %(n_out)s) = 0 THEN '1' ELSE '' END, 'pbx' "
    "FROM generate_series(0, %(calls)s - 1) i "
    "CROSS JOIN LATERAL (SELECT to_char((%(now)s::timestamptz - make_interval(secs => "
    "(%(calls)s - i) * 864000.0 / %(calls)s)) AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at) s "
    "JOIN contacts k ON k.number = '+331' || (90000000 + mod(i, %(contacts)s))::text ORDER BY i",
    "INSERT INTO consents (call_id, contact_id, number, kind, key, at, campaign) "
    "SELECT id, contact_id, number, 'consent', '1', started_at, campaign FROM calls "
    "WHERE outcome = 'message_played' ORDER BY id",
]


# The report's counts (schema 10) are kept by row triggers on calls: the seed runs with
# triggers off (as a restore does) and fills the counts once, as the migration does.
COUNTS = ("INSERT INTO call_counts (campaign, attempt, source, outcome, n) "
          "SELECT c.campaign, c.attempt, k.source, c.outcome, COUNT(*) FROM calls c "
          "LEFT JOIN contacts k ON k.id = c.contact_id GROUP BY 1, 2, 3, 4")
CHUNKS = ("INSERT INTO call_chunks (campaign, block, slot, version) "
          "SELECT campaign, id >> 13, 0, 1 FROM calls GROUP BY 1, 2")


def seed_big(store: Any, campaign: str, contacts: int, calls: int) -> list[str]:
    now = datetime.now(timezone.utc)
    p = {"ts": utc(now), "now": now.isoformat(), "c": campaign, "contacts": contacts,
         "calls": calls, "outcomes": OUTCOMES, "n_out": len(OUTCOMES)}
    counted = store.one("SELECT to_regclass('call_counts') IS NOT NULL AS t")["t"]
    chunked = store.one("SELECT to_regclass('call_chunks') IS NOT NULL AS t")["t"]
    with store.transaction():
        if counted:
            store.q("SET LOCAL session_replication_role = replica")  # no row triggers
        for sql in SEED:
            store.q(sql, p)
        if counted:
            store.q("SET LOCAL session_replication_role = origin")
            store.q(COUNTS)
        if chunked:  # report.csv's block versions (schema 11), as the migration fills them
            store.q(CHUNKS)
    for table in ("contacts", "campaign_contacts", "calls", "consents"):
        store.q(f"VACUUM ANALYZE {table}")  # what autovacuum does to a store that grew by use
    return [f"+331{90000000 + i:08d}" for i in range(contacts)]


def serve_web(base: Path, url: str) -> None:
    """Child process: the console over the PostgreSQL store, as `ivr web` serves it."""
    import uvicorn

    from ivr.web import create_app
    cfg = pg_cfg(base, url)
    uvicorn.run(create_app(cfg, lambda: app.open_store(cfg), freeze_gc=True), host="127.0.0.1",
                port=int(os.environ["BENCH_WEB_PORT"]), log_level="warning")


def start_web(base: Path, url: str) -> tuple[subprocess.Popen, str]:
    port = bench_web.bench_capacity.free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-web", str(base), url],
                            env={**os.environ, "IVR_WEB_SECRET": "b" * 64,
                                 "BENCH_WEB_PORT": str(port)})
    return proc, bench_web.wait_for_console(proc, f"http://127.0.0.1:{port}", 600)


def sizes(store: Any) -> dict[str, str]:
    return {r["t"]: r["size"] for r in store.q(
        "SELECT relname AS t, pg_size_pretty(pg_total_relation_size(oid)) AS size "
        "FROM pg_class WHERE relname IN ('contacts', 'campaign_contacts', 'calls', "
        "'consents') ORDER BY relname")}


def latency(args: argparse.Namespace, tmp: Path, cluster: PgCluster) -> dict[str, Any]:
    import httpx
    cfg = pg_cfg(tmp, cluster.url)
    build_prompts(cfg)
    store = app.open_store(cfg)
    t0 = time.monotonic()
    nums = seed_big(store, cfg.campaign.name, args.contacts, args.calls_in_store)
    seeded_s = time.monotonic() - t0
    token = bench_web.admin_token(store)
    web, url = start_web(tmp, cluster.url)
    results = {}
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=120) as client:
            for name, path, body in bench_web.routes(cfg.campaign.name, nums):
                if args.only and args.only not in name:
                    continue
                results[name] = bench_web.route_latency(client, args, name, path, body, nums,
                                                         store)
                print(name, results[name], file=sys.stderr, flush=True)
                bench_web.close_browser()  # chromium stays out of the routes after its own
    finally:
        bench_web.close_browser()
        web.terminate()
        web.wait(10)
    over = sorted(k for k, v in results.items() if v["p99_ms"] >= 200)
    out = {"backend": "postgresql (private cluster, fsync on)",
           "server": cluster.setting("server_version"), "contacts": args.contacts,
           "calls": args.calls_in_store, "seeded_in_s": round(seeded_s, 1),
           "sizes": sizes(store), "requests_per_route": args.requests, "routes": results,
           "goal": "p99 < 200 ms", "p99_at_or_over_200ms": over}
    getattr(store, "close", lambda: None)()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--calls-in-store", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per route")
    parser.add_argument("--only", default="", help="only the routes whose name holds this")
    parser.add_argument("--serve-web", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_web:
        return serve_web(Path(args.serve_web[0]), args.serve_web[1])
    # Ctrl-C or a kill still stops the cluster (the finally below), even started with `&`.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))
    os.environ["IVR_AMI_SECRET"] = bench_web.bench_capacity.SECRET
    os.environ.setdefault("IVR_CALLBACK_SECRET", bench_web.bench_capacity.SECRET)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL's own user must reach its cluster inside
        (Path(tmp) / "lat").mkdir()
        cluster = start_cluster(Path(tmp) / "pg")
        try:
            out = {"latency": latency(args, Path(tmp) / "lat", cluster)}
        finally:
            cluster.down()
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
