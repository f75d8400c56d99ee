"""Benchmark: a contact list's import, as `ivr contacts import` runs it, into two campaigns.

A CSV of `--contacts` lines (number, name, one extra column) is imported into campaign `a`,
then the same file into campaign `b`: the first creates every contact and its binding, the
second finds every contact and binds it again under b's list, with b's names (schema 25). For
each: the program's CPU (this process's), on PostgreSQL the server's (its processes, from
/proc), and the wall time, in seconds. A side-by-side run of two commits compares them (run it
from a git worktree of each, in turn).

Prints one JSON object. Usage (no sandbox, no root needed for SQLite):
  python3 bench/bench_import.py [--contacts 100000] [--backend sqlite|postgresql]
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_store_writes  # noqa: E402  (its store on either backend, the server's CPU)

from ivr.records.contacts import import_csv  # noqa: E402

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=timezone.utc)
PG_PORT = 55493  # beside bench_store_writes' (55492), bench_capacity's and `ivr db up`'s


def write_list(path: Path, contacts: int) -> None:
    """Mobile numbers 06 12 00 00 00 upwards, each with a name and a town."""
    with path.open("w", encoding="utf-8") as f:
        f.write("number,name,ville\n")
        for i in range(contacts):
            f.write(f"06{12_000_000 + i:08d},Personne {i},Ville {i % 100}\n")


def measure(contacts: int, backend: str, base: Path) -> dict[str, Any]:
    csv = base / "list.csv"
    write_list(csv, contacts)
    store, server, cluster = bench_store_writes.open_store(backend, base, PG_PORT)
    out: dict[str, Any] = {"backend": backend, "contacts": contacts}
    try:
        for campaign in ("a", "b"):
            s0, c0, w0 = server() if server else 0.0, time.process_time(), time.perf_counter()
            report = import_csv(store, csv, campaign=campaign, source=f"list-{campaign}",
                                basis="consent", acquired_on="2026-01-10",
                                default_region="FR", now=NOW)
            got = {"client_s": round(time.process_time() - c0, 2),
                   "wall_s": round(time.perf_counter() - w0, 2), "added": report.added}
            if server:
                got["server_s"] = round(server() - s0, 2)
            out[campaign] = got
    finally:
        store.close()
        if cluster is not None:
            cluster.down()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ivr-bench-import-") as tmp:
        os.chmod(tmp, 0o755)  # the cluster runs as the postgres user
        print(json.dumps(measure(args.contacts, args.backend, Path(tmp))))


if __name__ == "__main__":
    main()
