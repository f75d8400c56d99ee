"""Benchmark: controller capacity, call setups per second per controller core (issue 14 item 7).

One controller process (this one: `app.run_campaign`, the real dialer, FastAGI server, store and
run state) drives fake PBXes (ivr/telephony/fake_pbx.py) over real loopback sockets: AMI and
FastAGI. Each fake PBX runs in a child process of its own, so its CPU is not counted. No audio:
every callee answers at once and presses 1 at the intro (the yes path, the outcome, the proof of
consent), each prompt takes `--prompt-ms`.

A call setup = one attempt claimed, originated, answered, driven through the IVR and stored with
its outcome. The figure is setups ÷ the controller's CPU seconds (user + sys of this process,
from getrusage), i.e. setups/s per controller core; the wall-clock rate is printed too but is
bounded by the fake PBX processes on a 2-core machine.

Prints one JSON object. Usage (no sandbox, no root needed):
  python3 bench/bench_capacity.py [--calls 3000] [--concurrent 200] [--nodes 1]
  python3 bench/bench_capacity.py --history 100000   # a store with 100,000 past attempts
  python3 bench/bench_capacity.py --profile /tmp/cap.prof   # cProfile of the controller
  python3 bench/bench_capacity.py --statements   # SQLite statements per call setup
  python3 bench/bench_capacity.py --statements --backend postgresql   # round trips per setup
Backends: SQLite (store.path), or `--backend postgresql` (store.url): a private cluster started
for the run from Debian's postgresql package, as `ivr db up` does (root).
On PostgreSQL the server's CPU over the run is given beside (its processes, from /proc:
`server_cpu_ms_per_setup`, `setups_per_server_cpu_s`): what one central database serves.
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ivr  # noqa: E402  (same config, numbers and store set-up as the sandbox bench)

from ivr import app  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.store.base import StoreBackend  # noqa: E402
from ivr.store.pg_cluster import PgCluster  # noqa: E402
from ivr.config import NodeConfig  # noqa: E402

SECRET = "bench-capacity-secret"
PG_PORT = 55491  # not `ivr db up`'s default: the bench's cluster is its own


async def serve_pbx(prompt_s: float) -> None:
    """Child process: one fake PBX until stdin closes; prints its AMI port."""
    from ivr.telephony.fake_pbx import FakePbx, answer
    callee = answer(["1"], prompt_s=prompt_s)
    async with FakePbx(lambda number: callee, user="ivr", secret=SECRET) as pbx:
        print(pbx.ami_port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin at the end


def start_pbxes(n: int, prompt_s: float) -> list[tuple[subprocess.Popen, int]]:
    procs = []
    for _ in range(n):
        p = subprocess.Popen([sys.executable, __file__, "--serve-pbx", str(prompt_s)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append((p, int(p.stdout.readline())))  # type: ignore[union-attr]
    return procs


def free_port() -> int:
    """A free loopback port for the FastAGI server (the bench may run beside others)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a server process and its children, from /proc: the live
    children's own, the server's own and what its children that ended had used (cutime,
    cstime: a connection's backend ends with its session)."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: str) -> list[str]:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # after the command's name
    total = sum(int(x) for x in fields(str(pid))[11:15])  # utime stime cutime cstime
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            f = fields(p)
        except OSError:  # ended meanwhile
            continue
        if f[1] == str(pid):  # ppid
            total += int(f[11]) + int(f[12])
    return total / tick


def seed(cfg: bench_ivr.config.Config, nums: list[str], history: int,
         url: str) -> StoreBackend:
    """The contacts, bound to the campaign, through the store's own methods (both backends).
    `url`: a PostgreSQL store (what store.url selects), else SQLite at store.path."""
    if url:
        from ivr.store.pg import PgStore
        store: Any = PgStore.open(url, optout_key=SECRET.encode())
    else:
        store = app.open_store(cfg, busy_timeout_s=0.5)
    now = bench_ivr.datetime.now(bench_ivr.timezone.utc)
    if history:
        if url:
            raise SystemExit("--history is for the SQLite store only")
        with store.transaction():
            seed_history(store, cfg.campaign.name, history, bench_ivr.utc(now))
    for n in nums:
        store.add_contact(n, name=None, timezone=None, source="bench", basis="consent",
                          acquired_on=None, extra="{}", status="pending", now=now)
    store.bind_contacts(nums, campaign=cfg.campaign.name, source="bench", basis="consent",
                        acquired_on=None, now=now)
    return store


def seed_history(store: Any, campaign: str, n: int, ts: str) -> None:
    """A store that has lived: n past attempts of other numbers, each with a consent row, as
    a campaign's earlier evenings leave them (what each claim and answer look through)."""
    store.db.conn.executemany(
        "INSERT INTO calls (number, attempt, campaign, state, started_at, outcome, ended_at) "
        "VALUES (?, 1, ?, 'ended', ?, 'message_played', ?)",
        ((f"+3319901{i % 10000:04d}", campaign, ts, ts) for i in range(n)))
    store.db.conn.execute(
        "INSERT INTO consents (call_id, number, kind, key, at, campaign) SELECT id, number, "
        "'consent', '1', started_at, campaign FROM calls")


async def drive(cfg: bench_ivr.config.Config, store: StoreBackend,
                profile: cProfile.Profile | None) -> dict[str, float]:
    cpu0, t0 = cpu_s(), time.monotonic()
    if profile is not None:
        profile.enable()
    try:
        report, _ = await app.run_campaign(cfg, store)  # the pool of cfg.pbx.nodes
    finally:
        if profile is not None:
            profile.disable()
    return {"cpu_s": cpu_s() - cpu0, "elapsed_s": time.monotonic() - t0,
            "originated": float(report.originated)}


def measure(args: argparse.Namespace, base: Path) -> dict[str, object]:
    nums = numbers(args.calls)
    cfg = bench_ivr.bench_config(base, args.concurrent)
    cfg = dataclasses.replace(cfg, agi=dataclasses.replace(cfg.agi, port=free_port()),
                              pbx=dataclasses.replace(cfg.pbx, mode="external"))
    build_prompts(cfg)
    cluster = PgCluster(base / "pg", port=PG_PORT) if args.backend == "postgresql" else None
    url = postgres(cluster) if cluster else ""
    store = seed(cfg, nums, args.history, url)
    pbxes = start_pbxes(args.nodes, args.prompt_ms / 1000)
    cfg = dataclasses.replace(cfg, pbx=dataclasses.replace(cfg.pbx, nodes=[
        NodeConfig(f"fake{i + 1}", "127.0.0.1", port, "ivr") for i, (_, port) in
        enumerate(pbxes)]))
    profile = cProfile.Profile() if args.profile else None
    statements = (count_round_trips() if url else count_statements(store)) \
        if args.statements else None
    server = (cluster.status().pid or 0) if cluster else 0
    server0 = tree_cpu_s(server) if server else 0.0
    try:
        res = app.run(drive(cfg, store, profile))
        server_s = tree_cpu_s(server) - server0 if server else 0.0
    finally:
        for p, _ in pbxes:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(10)
    if profile is not None:
        profile.dump_stats(args.profile)
    # this run's calls only (the seeded history has no contact)
    outcomes = {r["outcome"]: r["n"] for r in store.q(
        "SELECT outcome, COUNT(*) AS n FROM calls WHERE contact_id IS NOT NULL GROUP BY 1")}
    per_node = {r["node"]: r["n"] for r in store.q(
        "SELECT node, COUNT(*) AS n FROM calls WHERE contact_id IS NOT NULL GROUP BY node")}
    stored = store.one("SELECT COUNT(*) AS n FROM calls WHERE outcome = 'message_played' AND "
                       "contact_id IS NOT NULL")["n"]
    proofs = store.one("SELECT COUNT(*) AS n FROM consents WHERE contact_id IS NOT NULL")["n"]
    getattr(store, "close", lambda: None)()
    return {"backend": args.backend, "nodes": args.nodes, "calls": args.calls,
            "history": args.history,
            "concurrent": args.concurrent, "prompt_ms": args.prompt_ms,
            "originated": int(res["originated"]), "message_played": stored, "consents": proofs,
            "calls_per_node": per_node, "outcomes": outcomes,
            "controller_cpu_s": round(res["cpu_s"], 3),
            "elapsed_s": round(res["elapsed_s"], 3),
            "cpu_ms_per_setup": round(res["cpu_s"] / max(stored, 1) * 1000, 3),
            "setups_per_cpu_s": round(stored / res["cpu_s"], 1),
            "setups_per_wall_s": round(stored / res["elapsed_s"], 1),
            # PostgreSQL: the server's CPU (its processes, from /proc) over the same run, what
            # sizes the central database; its setups a second per server core
            **({"server_cpu_ms_per_setup": round(server_s / max(stored, 1) * 1000, 3),
                "setups_per_server_cpu_s": round(stored / max(server_s, 1e-9), 1)}
               if server else {}),
            **({f"{'pg_round_trips' if url else 'sqlite_statements'}_per_setup":
                round(statements[0] / max(stored, 1), 2)} if statements is not None else {})}


def count_statements(store: Any) -> list[int]:
    """SQLite statements the run's store connection executes (BEGIN and COMMIT included), a
    figure the machine's noise does not move; a trigger's steps are traced as repeats of the
    statement that fired them and count once. Tracing costs CPU: not with the CPU figures."""
    seen, last = [0], [""]

    def traced(sql: str) -> None:
        if sql != last[0]:
            seen[0] += 1
        last[0] = sql
    store.db.conn.set_trace_callback(traced)
    return seen


def count_round_trips(patch: Callable[[Any, str, Any], None] = setattr) -> list[int]:
    """PostgreSQL: the round trips of every connection of this process from now on (the run's
    pool, its plans', its heartbeat): each statement one, each transaction two (BEGIN and
    COMMIT, or a nested one's SAVEPOINT and RELEASE); in pipeline mode (pg_pipeline.py) a
    statement is only sent, and each Sync waited for (a read of results, the COMMIT's) is one.
    A count the machine's noise does not move; its wrappers cost CPU: not with the CPU
    figures. `patch` puts them in place (a test's monkeypatch.setattr takes them out after).
    """
    import psycopg
    seen = [0]
    execute, enter = psycopg.Cursor.execute, psycopg.Transaction.__enter__
    sync, leave = psycopg.Pipeline.sync, psycopg.Pipeline.__exit__

    def counted_execute(self: Any, *args: Any, **kw: Any) -> Any:
        seen[0] += self.connection._pipeline is None
        return execute(self, *args, **kw)

    def counted_enter(self: Any) -> Any:
        seen[0] += 2
        return enter(self)

    def counted_sync(self: Any) -> Any:
        seen[0] += 1
        return sync(self)

    def counted_leave(self: Any, *args: Any) -> Any:
        seen[0] += self.level == 1  # the outermost's exit sends a Sync and waits for it
        return leave(self, *args)
    patch(psycopg.Cursor, "execute", counted_execute)
    patch(psycopg.Transaction, "__enter__", counted_enter)
    patch(psycopg.Pipeline, "sync", counted_sync)
    patch(psycopg.Pipeline, "__exit__", counted_leave)
    return seen


def postgres(cluster: PgCluster) -> str:
    """A private PostgreSQL cluster for this run (Debian's postgresql, as `ivr db up`),
    fsync on; its password goes where the store reads it (IVR_STORE_PASSWORD)."""
    cluster.up()
    os.environ["IVR_STORE_PASSWORD"] = cluster.password()
    return cluster.url


def numbers(n: int) -> list[str]:
    """Fiction numbers (+33 1 99 00 xx xx), as many as asked (up to 10,000)."""
    return [f"+3319900{i:04d}" for i in range(10, 10 + n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=1,
                        help="fake PBX nodes, one child process each (pbx.nodes)")
    parser.add_argument("--prompt-ms", type=float, default=0.0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--history", type=int, default=0,
                        help="past attempts (with consents) of other numbers in the store")
    parser.add_argument("--profile", default="", help="write a cProfile of the controller")
    parser.add_argument("--statements", action="store_true",
                        help="count the store's SQLite statements, or PostgreSQL round trips, "
                             "per setup (slows the run)")
    parser.add_argument("--serve-pbx", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pbx is not None:
        asyncio.run(serve_pbx(args.serve_pbx))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    os.environ["IVR_AMI_SECRET"] = SECRET
    os.environ.setdefault("IVR_CALLBACK_SECRET", SECRET)  # the callback route needs one
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL's own user must reach its cluster inside
        try:
            out = measure(args, Path(tmp))
        finally:
            if args.backend == "postgresql":
                PgCluster(Path(tmp) / "pg", port=PG_PORT).down()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
