"""Benchmark the prompt pipeline: cold build of the demo prompts, then a fully cached rebuild.

Usage: python bench/bench_prompts.py [--config config.yaml] [--engine espeak]
Prints one JSON line: {"cold_s": ..., "cached_s": ..., "prompts": N, "engine": ...}.
Builds into a temporary folder (never into the checkout); exits 1 if the cached rebuild
takes 1 s or more.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ivr import config
from ivr.prompts.build import build_prompts

CACHED_BUDGET_S = 1.0
REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--engine", default="espeak", choices=("gtts", "espeak", "auto"),
                        help="espeak by default so the numbers do not depend on the network")
    args = parser.parse_args(argv)

    cfg = config.load(args.config)
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        cfg.prompts.build_dir = str(Path(tmp) / "build")
        start = time.perf_counter()
        manifest = build_prompts(cfg, engine_override=args.engine)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = build_prompts(cfg, engine_override=args.engine)
        cached = time.perf_counter() - start
    if again != manifest:
        print("cached rebuild produced a different manifest", file=sys.stderr)
        return 1
    engines = sorted({e["engine"] or "file" for e in manifest["prompts"].values()})
    print(json.dumps({"cold_s": round(cold, 3), "cached_s": round(cached, 3),
                      "prompts": len(manifest["prompts"]), "engine": ",".join(engines)}))
    if cached >= CACHED_BUDGET_S:
        print(f"cached rebuild took {cached:.2f} s, budget {CACHED_BUDGET_S:g} s",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
