"""Benchmark: how long a SQLite run's re-plan holds the event loop. Prints one JSON object.

A store of N contacts (bench_plan.py's mix, or `--numbers reunion`) and an event loop whose
probe wakes every 5 ms, as the calls in progress need it to (an AGI command answered, an AMI
event read). Each round plans twice, in turn: on the loop (`planning.plan` over the run's
store, as every SQLite run did) and as a run now does (`Store.plan_reader`'s connection in a
store worker thread). Per way: the plan's wall seconds and the loop's longest gap between two
probe wake-ups while it ran (5 ms when nothing held it). Ratios are taken round by round.

Usage (no sandbox):
  python3 bench/bench_plan_stall.py [--contacts 100000] [--rounds 5] [--numbers reunion]
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_plan  # noqa: E402  (the same store, config and mix)

from ivr import config as config_mod  # noqa: E402
from ivr.app import open_store  # noqa: E402
from ivr.campaign.planning import plan  # noqa: E402
from ivr.store.workers import in_store_thread  # noqa: E402

TICK_S = 0.005


async def timed(way: str, cfg: Any, store: Any, reader: Any) -> dict[str, float]:
    gaps: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    task = asyncio.create_task(probe())
    await asyncio.sleep(TICK_S * 2)
    t0 = time.perf_counter()
    if way == "loop":
        p = plan(cfg, store, datetime.now(timezone.utc))
    else:
        p = await in_store_thread(reader.call, plan, cfg, reader.store,
                                  datetime.now(timezone.utc))
    wall = time.perf_counter() - t0
    await asyncio.sleep(TICK_S * 2)
    done.set()
    await task
    return {"plan_s": round(wall, 3), "loop_max_gap_ms": round(max(gaps) * 1000, 1),
            "due": len(p.due)}


async def rounds(cfg: Any, store: Any, reader: Any, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        loop = await timed("loop", cfg, store, reader)
        thread = await timed("thread", cfg, store, reader)
        out.append({"on_loop": loop, "in_thread": thread,
                     "gap_ratio": round(thread["loop_max_gap_ms"] / loop["loop_max_gap_ms"], 4),
                     "wall_ratio": round(thread["plan_s"] / loop["plan_s"], 3)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--numbers", choices=["mixed", "reunion"], default="mixed")
    args = parser.parse_args()
    if args.numbers == "reunion":
        bench_plan.number = bench_plan.reunion_number
    os.environ["IVR_OPTOUT_KEY"] = bench_plan.KEY
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cfg_file = bench_plan.write_config(Path(tmp), {"path": str(Path(tmp) / "plan.db")})
        cfg = config_mod.load(str(cfg_file))
        store = open_store(cfg)
        bench_plan.seed_sqlite(store, bench_plan.rows(args.contacts, datetime.now(timezone.utc)))
        reader = store.plan_reader()
        try:
            result = asyncio.run(rounds(cfg, store, reader, args.rounds))
        finally:
            reader.close()
            store.close()
    gaps = [r["gap_ratio"] for r in result]
    print(json.dumps({"git": bench_plan.git_head(), "contacts": args.contacts,
                      "numbers": args.numbers, "load_before": load,
                      "load_after": os.getloadavg(), "rounds": result,
                      "gap_ratio_median": statistics.median(gaps),
                      "gap_ratio_range": [min(gaps), max(gaps)]}, indent=2))


if __name__ == "__main__":
    main()
