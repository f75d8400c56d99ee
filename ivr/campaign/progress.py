"""Live progress of a run: a rich table on a terminal, plain log lines otherwise."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ivr.store.sqlite import Store


class Progress:
    def __init__(self, store: Store, campaign: str, console: Console, every_s: float = 2.0):
        self.store = store
        self.campaign = campaign
        self.console = console
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = 0.0
        self._live: Live | None = None
        self._since = store.one("SELECT COALESCE(MAX(id), 0) AS m FROM calls")["m"]  # type: ignore

    def __enter__(self) -> "Progress":
        if self.console.is_terminal:
            self._live = Live(self._table(0, Counter()), console=self.console,
                              refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.tick(0, force=True)
        if self._live is not None:
            self._live.__exit__(*exc)

    def _counts(self) -> Counter[str]:
        rows = self.store.q("SELECT outcome, COUNT(*) AS n FROM calls WHERE id > ? AND "
                            "campaign = ? AND outcome IS NOT NULL GROUP BY outcome",
                            (self._since, self.campaign))
        return Counter({r["outcome"]: r["n"] for r in rows})

    def _table(self, inflight: int, counts: Counter[str]) -> Table:
        done = sum(counts.values())
        elapsed = max(time.monotonic() - self.started, 1e-6)
        table = Table(title=f"campaign {self.campaign}", show_header=False)
        table.add_row("in flight", str(inflight))
        table.add_row("done", str(done))
        table.add_row("rate", f"{done / elapsed * 60:.1f} calls/min")
        for outcome, n in counts.most_common():
            table.add_row(f"  {outcome}", str(n))
        return table

    def tick(self, inflight: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.25 if self._live else self.every_s):
            return
        self._last = now
        counts = self._counts()
        if self._live is not None:
            self._live.update(self._table(inflight, counts))
        else:
            done = sum(counts.values())
            outcomes = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            self.console.print(f"progress: in_flight={inflight} done={done} {outcomes}",
                               highlight=False, soft_wrap=True)
