"""Live progress of a run from its snapshots: a rich table on a terminal, plain lines otherwise.

It reads `Snapshot`s only (ivr/campaign/state.py): no store, no dialer, no controller.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ivr.campaign.state import Snapshot


# Plain lines (a log, journald): a line the same as the last printed waits this long, so a
# standby or a wait for retries writes one a minute, not ~40,000 identical lines a day.
SAME_LINE_S = 60.0


class Progress:
    def __init__(self, console: Console, every_s: float = 2.0) -> None:
        self.console = console
        self.every_s = every_s  # plain lines: at most one per this many seconds of run time
        self.last: Snapshot | None = None  # the latest snapshot seen (the final one at the end)
        self._shown: Snapshot | None = None
        self._text = ""  # the last plain line printed
        self._live: Live | None = None

    def __enter__(self) -> "Progress":
        if self.console.is_terminal:
            self._live = Live(Table(), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.last is not None and self.last is not self._shown:
            self._render(self.last)
        if self._live is not None:
            self._live.__exit__(*exc)

    def show(self, snap: Snapshot) -> None:
        """A RunState subscriber: keep the snapshot, redraw when due."""
        self.last = snap
        shown = self._shown
        gap = 0.25 if self._live is not None else self.every_s
        if shown is None or snap.stopped:
            self._render(snap)
            return
        since = (snap.at - shown.at).total_seconds()
        if since >= gap and (self._live is not None or since >= SAME_LINE_S or
                             line(snap) != self._text):
            self._render(snap)

    def _render(self, snap: Snapshot) -> None:
        self._shown = snap
        if self._live is not None:
            self._live.update(table(snap))
        else:
            self._text = line(snap)
            self.console.print(self._text, highlight=False, soft_wrap=True, markup=False)


def line(snap: Snapshot) -> str:
    parts = [f"progress: in_flight={snap.in_flight} done={snap.done}"]
    parts += [f"{k}={v}" for k, v in sorted(snap.outcomes)]
    why = _why(snap)
    if why:
        parts.append(f"[{snap.status}: {why}]")
    return " ".join(parts)


def table(snap: Snapshot) -> Table:
    t = Table(title=f"campaign {snap.campaign}", show_header=False)
    t.add_row("status", snap.status + (f" ({_why(snap)})" if _why(snap) else ""))
    t.add_row("in flight", f"{snap.in_flight} / {snap.max_concurrent}")
    t.add_row("placed", str(snap.originated))
    t.add_row("done", str(snap.done))
    t.add_row("rate", f"{snap.rate_per_min:.1f} calls/min")
    if snap.eta_s is not None:
        t.add_row("eta", f"{snap.eta_s / 60:.1f} min")
    if snap.next_retry is not None:
        t.add_row("next retry", f"{snap.next_retry:%H:%M:%S} UTC")
    for outcome, n in snap.outcomes:
        t.add_row(f"  {outcome}", str(n))
    return t


def _why(snap: Snapshot) -> str:
    return snap.paused or snap.console or snap.holding or (
        snap.waiting if snap.status == "waiting" else "")
