"""The controller's side of the web console: the run's desired state and pacing, read from the
store every tick, and this controller's snapshots published there.

The console never reaches into a controller: it writes the campaign's `run_control` row
(running, paused, stopped, hard_stop; max_concurrent, calls_per_second) and every controller of
the campaign, on any machine, reads it here:
- paused: no new calls; calls in flight finish;
- stopped: the graceful stop (the first Ctrl-C); hard_stop: every call is hung up (the second);
- pacing: overrides the config's, never beyond it (the config's values are the legal bounds
  the campaign was checked with; check_pacing refuses more on write).
Snapshots go to `run_snapshots` as snapshot_dict(...) at most once a second.
The same read, each tick, brings the oppositions added since the last (callflow/opposed.py): the
IVR checks an answered call's number against them without a store round trip.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ivr.callflow.opposed import Opposed
from ivr.campaign.clock import Clock
from ivr.campaign.state import NodeSnapshot, RunState, Snapshot
from ivr.config import Config
from ivr.config_checks import MIN_CALLS_PER_SECOND, check_calls_per_second
from ivr.errors import ConfigError
from ivr.store.base import Row, utc
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.workers import in_store_thread

log = logging.getLogger(__name__)
POLL_S = 0.5      # the run control is read this often (a console click acts within it)
PUBLISH_S = 1.0   # a controller's snapshot is written at most this often
CLI = "cli"       # the audit's actor for a start from the command line
CARRIER = "carrier"  # ... for the stop of a carrier breaker's trip (carrier_guard.py)
STANDBY = "standby: waiting for the console's Start"
PAUSED = "paused from the console"


def check_pacing(cfg: Config, max_concurrent: int | None,
                 calls_per_second: float | None) -> None:
    """ConfigError naming the field when the pacing asked for is outside the config's bounds
    (1..dialer.max_concurrent calls; one call a minute up to dialer.calls_per_second per
    second: the same floor as the config's)."""
    top_n, top_r = cfg.dialer.max_concurrent, cfg.dialer.calls_per_second
    if max_concurrent is not None and not 1 <= max_concurrent <= top_n:
        raise ConfigError(f"max_concurrent is {max_concurrent!r}: use at least 1 and at most "
                          f"{top_n} calls (dialer.max_concurrent)")
    if calls_per_second is not None:
        check_calls_per_second("calls_per_second", calls_per_second, top_r,
                               " (dialer.calls_per_second)")


def controller_name(store: Any) -> str:
    """This controller's name in run_snapshots: the store's controller id when it keeps one
    (several controllers), else host:pid."""
    return str(getattr(store, "controller_id", None) or f"{socket.gethostname()}:{os.getpid()}")


_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(Snapshot))
_NODE_FIELDS = tuple(f.name for f in dataclasses.fields(NodeSnapshot))


def snapshot_dict(snap: Snapshot, controller: str) -> dict[str, Any]:
    """A Snapshot as JSON: instants as the store's UTC text, outcomes as {outcome: n} in the
    outcome table's order, nodes as a list of objects, plus the controller's name."""
    # Field by field, not dataclasses.asdict: its deep copy of flat values was most of the
    # cost of a snapshot written every second.
    out = {name: getattr(snap, name) for name in _SNAPSHOT_FIELDS}
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = utc(value)
    out["outcomes"] = dict(snap.outcomes)
    out["nodes"] = [{name: getattr(n, name) for name in _NODE_FIELDS} for n in snap.nodes]
    out["controller"] = controller
    return out


def said(row: Row | None) -> tuple[Any, Any] | None:
    """The desired state's last write (pacing-only writes leave updated_at), None: no row."""
    return (row["updated_at"], row["desired"]) if row else None


def _said_by(desired: str, row: Row | None) -> str:
    """A new desired state and its writer: updated_by names the desired state's last writer
    only (a pacing-only write keeps it), so a pacing change is logged without a name (the
    audit has the console's user)."""
    by = (row or {}).get("updated_by")
    return f"{desired} (by {by})" if by else desired


def poll_opposed(opposed: Opposed, store: Any, now: datetime) -> None:
    """One read of the recent oppositions; a store away is read again from the same point."""
    try:
        opposed.poll(store, now)
    except STORE_ERRORS as exc:
        log.debug("recent oppositions unreadable: %s", exc)


class RunControl:
    """What the console wants of this run; `watch` applies it, the run loop reads it."""

    def __init__(self, cfg: Config, store: Any, clock: Clock, stop: asyncio.Event,
                 hard_stop: asyncio.Event, state: RunState, *, controller: str | None = None,
                 poll_s: float | None = None, publish_s: float | None = None,
                 opposed: Opposed | None = None) -> None:
        self.cfg, self.store, self.clock, self.state = cfg, store, clock, state
        self.opposed = opposed  # the IVR's recent oppositions, kept up to date each tick
        self.campaign = cfg.campaign.name
        self.stop, self.hard_stop = stop, hard_stop
        self.controller = controller or controller_name(store)
        self.poll_s, self.publish_s = poll_s or POLL_S, publish_s or PUBLISH_S
        self.max_concurrent = cfg.dialer.max_concurrent
        self.calls_per_second = cfg.dialer.calls_per_second
        self.desired = "running"
        self.stopped_by = ""  # the row's actor when its stop stopped this run
        self.changed = asyncio.Event()  # the desired state or the pacing moved
        self._remote = bool(getattr(store, "remote", False))  # PostgreSQL: off the loop
        self._latest: Snapshot | None = None
        self._published_at = float("-inf")
        self._unsubscribe: Callable[[], None] = state.subscribe(self._keep)

    @property
    def paused(self) -> bool:
        return self.desired == "paused"

    @property
    def interval(self) -> float:
        return 1.0 / self.calls_per_second

    async def until_slot(self, since: float, *wake: asyncio.Event) -> None:
        """Wait until one interval after `since` (the last departure), at the interval in
        force: a new pacing from the console moves the slot, so an operator who typed 0.02/s
        by mistake and puts 10/s back is not held to the 50-s wait. A stop or one of `wake`
        ends the wait; a pause does not (it is seen at the slot). The slot is computed again
        after every wake: another waiter (the run's pacing and an Originate's) may have cleared
        `changed` first, which must not end this wait before its slot."""
        while True:
            self.changed.clear()
            left = since + self.interval - self.clock.monotonic()
            if left <= 0 or self.stop.is_set() or any(e.is_set() for e in wake):
                return
            await self.clock.wait(self.stop, self.changed, *wake, timeout=left)

    # -- starting -------------------------------------------------------------------------------
    async def begin(self, standby: bool, resume: bool = False) -> None:
        """A CLI start says `running` (audited), but joins a pause a console user set
        (_start_unless_paused; `resume`, `ivr run --resume`: it starts over it); a standby run
        waits, without dialling, for the console's Start given after it began (the row as it
        was then does not count: an old `running` or `stopped` is another run's). Only a write of the desired state counts:
        its updated_at moves, a pacing-only write leaves it (store/sqlite_console.py), so
        saving the pacing is neither a Start nor a Stop; the pacing is applied by value."""
        if not standby:
            await self._start(resume)
            await self.read()
            return
        log.warning("%s (campaign %s)", STANDBY, self.campaign)
        self.state.set(console=STANDBY)
        seen: Any = False  # the desired state's last write when the standby began
        while not self.stop.is_set():
            row = await self._row()
            if row is not False:  # the store away says nothing, not even the baseline
                word = said(row)
                fresh, seen = seen is not False and word != seen, word
                changed = self.apply(row, None if fresh else self.desired)
                if fresh and row and row["desired"] == "running":
                    break
                if changed:
                    self.state.set(console=STANDBY)
            await self.publish()
            await self.clock.wait(self.stop, timeout=self.poll_s)
        self.state.set(console="")

    async def _start(self, resume: bool = False) -> None:
        """The CLI start's write, tried again each second while the store is away, the run
        paused and saying why (a connection lost at the very start raised out of the run);
        a stop ends the wait."""
        away = ""
        while not self.stop.is_set():
            try:
                await self._call(self._start_unless_paused, self.clock.now(), resume)
                break
            except STORE_ERRORS as exc:
                if not away:  # once per outage; the snapshot shows it meanwhile
                    log.error("store unavailable (%s): the run starts once it answers", exc)
                away = " ".join(str(exc).split()) or type(exc).__name__
                self.state.set(paused=f"store unavailable: {away}")
            await self.clock.wait(self.stop, timeout=1.0)
        if away:
            self.state.set(paused="")

    def _start_unless_paused(self, now: Any, resume: bool = False) -> None:
        """Write `running`, unless the console paused the campaign: this run then joins the
        pause, alone too (restarting one of a paused cluster must not resume them all, and a
        paused controller restarted by its service manager after a crash resumed the calls
        the console had paused). `resume` (`ivr run --resume`): the operator's start over it.
        A stop is replaced by running, as before: starting after a stop is the start."""
        row = self.store.run_control(self.campaign)
        # a row saving the pacing alone says paused with no updated_at: nobody pressed Pause
        if row and row["desired"] == "paused" and row.get("updated_at") and not resume:
            log.warning("campaign %s is paused in the console%s: this run stays paused too; "
                        "resume it there (or start with `ivr run --resume`)", self.campaign,
                        f" (by {row['updated_by']})" if row.get("updated_by") else "")
            return
        self.store.set_run_control(self.campaign, desired="running", by=CLI, now=now)

    async def stop_all(self, by: str) -> None:
        """Stop every controller of the campaign, as the console's Stop does (audited as `by`):
        the next `ivr run` writes `running` again at its start (begin). A stop already stored
        (the console's hard_stop, an operator's stop) stays as it is; while the store is away
        the write is tried again each poll, until it lands or the run cancels it."""
        told = False
        while True:
            try:
                await self._call(self._stop_unless_stopped, by, self.clock.now())
                return
            except STORE_ERRORS as exc:  # this run stops all the same; the others wait for it
                (log.debug if told else log.error)(
                    "could not tell the campaign's other controllers to stop yet: %s", exc)
                told = True
            await self.clock.sleep(self.poll_s)

    def _stop_unless_stopped(self, by: str, now: Any) -> None:
        row = self.store.run_control(self.campaign)
        if not row or row["desired"] not in ("stopped", "hard_stop"):
            self.store.set_run_control(self.campaign, desired="stopped", by=by, now=now)

    # -- every tick -----------------------------------------------------------------------------
    async def watch(self) -> None:
        """Read the run control and publish the latest snapshot, until cancelled."""
        told = ""
        while True:
            try:
                await self.read()
                await self.publish()
                told = ""
            except Exception as exc:  # noqa: BLE001 - dead, it would leave Stop and Pause unheard
                kind = type(exc).__name__
                if kind != told:  # once per kind of failure in a row, not every poll
                    told = kind
                    log.exception("run control: reading or publishing failed; trying again")
                else:
                    log.debug("run control still failing: %s", exc)
            await self.clock.sleep(self.poll_s)

    async def read(self) -> None:
        row = await self._row()
        if row is not False:
            self.apply(row)

    async def _row(self) -> Any:
        """The campaign's run_control row (None: none yet), False when the store is away."""
        try:
            return await self._call(self._read_row, self.clock.now())
        except STORE_ERRORS as exc:  # the store away: keep the last word (the run pauses)
            log.debug("run control unreadable: %s", exc)
            return False

    def _read_row(self, now: datetime) -> Row | None:
        """The row, then the oppositions added since the last tick: one trip off the loop on
        PostgreSQL; the second read only once the first answered (a store away costs one
        connect timeout per tick, not two)."""
        row = self.store.run_control(self.campaign)
        if self.opposed is not None:
            poll_opposed(self.opposed, self.store, now)
        return row

    def apply(self, row: Row | None, desired: str | None = None) -> bool:
        """Apply the row's desired state (or `desired`: a standby keeps its own until a new
        word) and pacing; whether either moved."""
        desired = desired or (row["desired"] if row else "running")
        changed = False
        n, r = self._pacing(row)
        if (desired, n, r) != (self.desired, self.max_concurrent, self.calls_per_second):
            log.warning("console: %s, max_concurrent %d, %g calls/s", _said_by(desired, row)
                        if desired != self.desired else f"still {desired}", n, r)
            self.desired, self.max_concurrent, self.calls_per_second = desired, n, r
            self.state.max_concurrent = n
            self.state.set(console=PAUSED if desired == "paused" else "")
            self.changed.set()
            changed = True
        if desired in ("stopped", "hard_stop") and not self.stop.is_set():
            self.stopped_by = str((row or {}).get("updated_by") or "")
            self.stop.set()
            self.state.set(stopping=True)
        if desired == "hard_stop" and not self.hard_stop.is_set():
            self.hard_stop.set()
        return changed

    def _pacing(self, row: Row | None) -> tuple[int, float]:
        """The row's pacing, within the config's bounds (a row written past them, by hand, under
        an older config or before the floor of one call a minute, is clamped and said)."""
        top_n, top_r = self.cfg.dialer.max_concurrent, self.cfg.dialer.calls_per_second
        n = (row or {}).get("max_concurrent") or top_n
        r = (row or {}).get("calls_per_second") or top_r
        if n > top_n or not MIN_CALLS_PER_SECOND <= r <= top_r:
            log.warning("run control asks for %s calls, %s/s: outside the config's %d, "
                        "1/60..%g; kept to them", n, r, top_n, top_r)
        return max(1, min(int(n), top_n)), min(max(float(r), MIN_CALLS_PER_SECOND), top_r)

    # -- snapshots ------------------------------------------------------------------------------
    def _keep(self, snap: Snapshot) -> None:
        self._latest = snap  # the subscriber only remembers: the store write is in watch()

    async def publish(self, force: bool = False) -> None:
        snap = self._latest
        if snap is None or (not force and
                            self.clock.monotonic() - self._published_at < self.publish_s):
            return
        self._latest = None
        self._published_at = self.clock.monotonic()
        try:
            await self._call(self.store.publish_snapshot, self.campaign, self.controller,
                             snapshot_dict(snap, self.controller), self.clock.now())
        except STORE_ERRORS as exc:  # the console's view lags; the run goes on
            log.debug("snapshot not published: %s", exc)

    async def close(self) -> None:
        """The run is over: its final snapshot is published, whatever the rate limit."""
        self._unsubscribe()
        if self.state.last is not None:
            self._latest = self.state.last
        await self.publish(force=True)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if self._remote:
            return await in_store_thread(fn, *args, **kw)
        return fn(*args, **kw)
