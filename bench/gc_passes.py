"""The cyclic collector's passes, timed through gc.callbacks: the benches' one instrument for
how much of a run (bench_baseline) or of a request (trace_web) went to garbage collection."""
from __future__ import annotations

import gc
import time
from typing import Any

Pass = tuple[int, float, float]  # generation, wall ms, CPU ms


class GcPasses:
    """Every pass since the last take(), as (generation, wall ms, CPU ms)."""

    def __init__(self) -> None:
        self.passes: list[Pass] = []
        self._t0 = (0.0, 0.0)
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = (time.perf_counter(), time.process_time())
            return
        wall, cpu = self._t0
        self.passes.append((info["generation"], (time.perf_counter() - wall) * 1e3,
                            (time.process_time() - cpu) * 1e3))

    def take(self) -> list[Pass]:
        out, self.passes = self.passes, []
        return out


def per_call(passes: list[Pass], calls: int) -> dict[str, object]:
    """The collector's CPU per call and its passes per generation."""
    return {"gc_ms_per_call": round(sum(p[2] for p in passes) / calls, 3),
            "gc_passes": [sum(1 for p in passes if p[0] == g) for g in range(3)]}
