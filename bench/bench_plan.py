"""Benchmark: planning at scale (issue 14 item 7). Prints one JSON object.

For each backend and size N: a store with N contacts bound to the campaign, seeded fast in one
transaction (SQLite executemany, PostgreSQL COPY) with a realistic mix (per contact i, i % 100):
  0-79 never called (due)                  80-89 one no-answer 3 days ago, retry passed (due)
  90-91 four attempts this month (cap)     92-93 refused in another campaign 10 days ago
  94 on the opposition list, still pending 95-96 busy an hour ago, retry in 2 h (retry_wait)
  97 consent's slot 'morning'              98 its own time zone (Europe/Paris)
  99 binding done (not pending, not planned)
Numbers: French mobiles and landlines, 1 % each of Réunion landlines, Réunion mobiles (+262 692:
Réunion or Mayotte) and Guadeloupe mobiles. The schedule is mon-sun 00:00-24:00 with a décret
override reason, so that who is due does not depend on the hour the bench runs at.

Then `ivr run --dry-run` as an operator runs it: the real CLI in a child process
(`python3 -m ivr.cli --config FILE run --dry-run`) with its stdout written to a file (the
bench counts its lines), wall time, CPU and peak RSS of that child (GNU time), `--repeat` times. And `planning.plan()` as the run's re-plans call it, in a child process holding the whole
Plan (min of `--repeat`, and that child's peak RSS).

Usage (root; PostgreSQL: a private cluster started and removed by the bench):
  python3 bench/bench_plan.py                                # 100,000, both backends
  python3 bench/bench_plan.py --contacts 100000,300000,1000000 --backend sqlite
  python3 bench/bench_plan.py --numbers reunion   # a Réunion list: every number overseas
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench_web_pg import start_cluster  # noqa: E402  (a private cluster on a free port)
from ivr import config as config_mod  # noqa: E402
from ivr.store.base import utc  # noqa: E402
from ivr.store.pg_cluster import PgCluster  # noqa: E402

CAMPAIGN = "plan-bench"
CALLER_ID = "+33162000000"
KEY = "p" * 32  # IVR_OPTOUT_KEY of the bench's stores (the opposition hashes use it)
REASON = "bench: every hour, so that who is due does not depend on when the bench runs"


def number(i: int) -> str:
    kind = (i // 100) % 100
    if kind == 0:
        return f"+262262{i:06d}"  # Réunion landline
    if kind == 1:
        return f"+262692{i:06d}"  # Réunion mobile (+262 692: Réunion or Mayotte)
    if kind == 2:
        return f"+590690{i:06d}"  # Guadeloupe mobile
    if kind < 40:
        return f"+33{1 + i % 5}0{i:07d}"  # landline
    return f"+3360{i:07d}"  # mobile


def reunion_number(i: int) -> str:
    """--numbers reunion: a Réunion list, mobiles (0692) and landlines (0262) in turn."""
    return f"+262{'692' if i % 2 == 0 else '262'}{i // 2:06d}"


def rows(n: int, now: datetime) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows for N contacts (the same on both backends)."""
    ts = utc(now - timedelta(days=40))
    out: dict[str, list[tuple[Any, ...]]] = {k: [] for k in (
        "contacts", "campaign_contacts", "calls", "consents", "optouts")}
    call_id = 0

    def call(cid: int, num: str, attempt: int, campaign: str, at: datetime, outcome: str,
             retry: datetime | None) -> int:
        nonlocal call_id
        call_id += 1
        out["calls"].append((call_id, cid, num, attempt, campaign, CALLER_ID, "ended",
                             utc(at), utc(at + timedelta(seconds=30)), outcome,
                             utc(retry) if retry else None))
        return call_id

    for i in range(n):
        cid, num, cls = i + 1, number(i), i % 100
        out["contacts"].append((cid, num, "Europe/Paris" if cls == 98 else None,
                                f"list{i % 5}", "consent", "2026-01-15", "pending",
                                "morning" if cls == 97 else None, ts, ts))
        out["campaign_contacts"].append((cid, CAMPAIGN, f"list{i % 5}", "consent",
                                         "2026-01-15", "done" if cls == 99 else "pending", ts))
        if 80 <= cls <= 89:
            call(cid, num, 1, CAMPAIGN, now - timedelta(days=3), "no_answer",
                 now - timedelta(days=2))
        elif cls in (90, 91):
            for a in range(4):
                call(cid, num, a + 1, CAMPAIGN, now - timedelta(days=20 - 5 * a), "no_answer",
                     now - timedelta(days=19 - 5 * a))
        elif cls in (92, 93):
            at = now - timedelta(days=10)
            k = call(cid, num, 1, "other-campaign", at, "declined", None)
            out["consents"].append((k, cid, num, "refusal", "2", utc(at), "other-campaign"))
        elif cls == 94:
            h = hmac.new(KEY.encode(), num.encode(), hashlib.sha256).hexdigest()
            out["optouts"].append((h, num, "callback", None, ts))
        elif cls in (95, 96):
            call(cid, num, 1, CAMPAIGN, now - timedelta(hours=1), "busy",
                 now + timedelta(hours=2))
    return out


COLUMNS = {
    "contacts": "id, number, timezone, source, basis, acquired_on, status, slot, created_at, "
                "updated_at",
    "campaign_contacts": "contact_id, campaign, source, basis, acquired_on, status, bound_at",
    "calls": "id, contact_id, number, attempt, campaign, caller_id, state, started_at, ended_at, "
             "outcome, retry_at",
    "consents": "call_id, contact_id, number, kind, key, at, campaign",
    "optouts": "number_hash, number, via, campaign, created_at",
}


def seed_sqlite(store: Any, data: dict[str, list[tuple[Any, ...]]]) -> None:
    conn = store.db.conn
    with store.transaction():
        for table, cols in COLUMNS.items():
            marks = ", ".join("?" * len(cols.split(",")))
            conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", data[table])
    conn.execute("ANALYZE")


def seed_pg(store: Any, data: dict[str, list[tuple[Any, ...]]]) -> None:
    """COPY, with row triggers off as a restore runs (the report's counts are not planning's)."""
    with store.transaction():
        conn = store._local.conn
        conn.execute("SET LOCAL session_replication_role = replica")
        for table, cols in COLUMNS.items():
            with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in data[table]:
                    copy.write_row(row)
        conn.execute("SELECT setval(pg_get_serial_sequence('contacts', 'id'), "
                     "(SELECT MAX(id) FROM contacts))")
        conn.execute("SELECT setval(pg_get_serial_sequence('calls', 'id'), "
                     "(SELECT COALESCE(MAX(id), 1) FROM calls))")
    for table in COLUMNS:
        store.q(f"VACUUM ANALYZE {table}")  # what autovacuum does to a store that grew by use


def write_config(base: Path, store: dict[str, str]) -> Path:
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["campaign"].update(name=CAMPAIGN, caller_id=CALLER_ID)
    data["store"] = store
    data["prompts"]["sources_dir"] = str(REPO / "prompts")
    data["prompts"]["build_dir"] = str(base / "build")
    data["schedule"] = {"windows": [{"days": "mon-sun", "hours": ["00:00-24:00"]}],
                        "override_reason": REASON}
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def timed(cmd: list[str], stdout: Any, base: Path) -> tuple[subprocess.CompletedProcess[bytes],
                                                            dict[str, float]]:
    """Run `cmd` under GNU time: its wall and CPU seconds and peak RSS. Not os.wait4 from this
    process: a child forked from the bench (hundreds of MB of seed rows) would report the
    bench's own size as its peak (the fork's copy counts until the exec)."""
    stats = base / "time.txt"
    proc = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M", *cmd],
                          stdout=stdout, stderr=subprocess.PIPE, check=False)
    wall, user, sys_, kb = stats.read_text().split()[-4:]
    return proc, {"wall_s": float(wall), "cpu_s": round(float(user) + float(sys_), 2),
                  "peak_rss_mb": round(int(kb) / 1024, 1)}


def dry_run(cfg_file: Path, out: Path) -> dict[str, Any]:
    """`ivr run --dry-run` in a child process, stdout to `out`: wall s, peak RSS MB, lines."""
    with out.open("wb") as f:
        proc, stats = timed([sys.executable, "-m", "ivr.cli", "--config", str(cfg_file),
                             "run", "--dry-run"], f, out.parent)
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
    with out.open("rb") as f:
        lines = f.read().splitlines()
    return {**stats, "lines": len(lines), "summary": lines[-1].decode() if lines else ""}


def in_process(cfg_file: Path, repeat: int) -> dict[str, Any]:
    """plan_child in a child process: its figures and its peak RSS (the whole Plan held)."""
    proc, stats = timed([sys.executable, __file__, "--plan-child", str(cfg_file),
                         "--repeat", str(repeat)], subprocess.PIPE, cfg_file.parent)
    return {**json.loads(proc.stdout or b"{}"), "plan_peak_rss_mb": stats["peak_rss_mb"]}


def plan_child(cfg_file: Path, repeat: int) -> dict[str, Any]:
    """planning.plan() as the run's re-plans call it: min and max seconds over `repeat`."""
    from ivr.app import open_store
    from ivr.campaign.planning import plan
    cfg = config_mod.load(str(cfg_file))
    store = open_store(cfg)
    times, cpu, due = [], [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        p = plan(cfg, store, datetime.now(timezone.utc))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        due = len(p.due)
        del p
    getattr(store, "close", lambda: None)()
    return {"plan_s_min": round(min(times), 3), "plan_s_max": round(max(times), 3),
            "plan_cpu_s_min": round(min(cpu), 3), "due": due}


def one(backend: str, n: int, base: Path, cluster: PgCluster | None,
        args: argparse.Namespace) -> dict[str, Any]:
    from ivr.app import open_store
    base.mkdir(parents=True)
    if backend == "sqlite":
        cfg_file = write_config(base, {"path": str(base / "plan.db")})
    else:
        assert cluster is not None
        name = f"plan{n}"
        cluster.create_database(name)
        cfg_file = write_config(base, {"url": cluster.url_for(name)})
    cfg = config_mod.load(str(cfg_file))
    t0 = time.monotonic()
    data = rows(n, datetime.now(timezone.utc))
    store = open_store(cfg)
    (seed_sqlite if backend == "sqlite" else seed_pg)(store, data)
    getattr(store, "close", lambda: None)()
    del data
    seeded = time.monotonic() - t0
    runs = [dry_run(cfg_file, base / f"dry{k}.out") for k in range(args.repeat)]
    result = {"backend": backend, "contacts": n, "seeded_s": round(seeded, 1),
              "dry_runs": runs,
              "dry_run_wall_s_min": min(r["wall_s"] for r in runs),
              "dry_run_peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
              **({} if args.no_in_process else in_process(cfg_file, args.repeat))}
    print(json.dumps(result), file=sys.stderr, flush=True)
    if cluster is not None:
        cluster.drop_database(f"plan{n}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", default="100000", help="sizes, comma-separated")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3, help="dry runs (and plans) per size")
    parser.add_argument("--no-in-process", action="store_true", help="skip plan() in-process")
    parser.add_argument("--numbers", choices=["mixed", "reunion"], default="mixed",
                        help="mixed: the mix above; reunion: every number a Réunion one")
    parser.add_argument("--plan-child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.numbers == "reunion":
        global number
        number = reunion_number
    if args.plan_child:
        print(json.dumps(plan_child(Path(args.plan_child), args.repeat)))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))
    os.environ["IVR_OPTOUT_KEY"] = KEY
    sizes = [int(s) for s in args.contacts.split(",")]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL's own user must reach its cluster inside
        cluster = start_cluster(Path(tmp) / "pg") if "postgresql" in backends else None
        try:
            for backend in backends:
                for n in sizes:
                    results.append(one(backend, n, Path(tmp) / f"{backend}{n}", cluster, args))
        finally:
            if cluster is not None:
                cluster.down()
    print(json.dumps({"git": git_head(), "load_before": load, "load_after": os.getloadavg(),
                      "stdout": "a file (lines counted)", "results": results}, indent=2))


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    main()
