"""The state of one run, published as immutable snapshots.

The run (campaign/run.py) is the only writer. Readers — the terminal progress, the report at
the end of `ivr run`, a future web console — get `Snapshot`s through a callback or an async
iterator and never touch the dialer, the controller or the store.

A snapshot is published at least every `every_s` (1 s) and on every change, at most once per
`min_gap_s`, so a thousand calls ending together cost a few snapshots, not a thousand. The
outcome counts (a store query over the run's attempts) are read at most once per `count_every_s`
(1 s) and always for the final snapshot: in between, a snapshot carries the last counts read.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from ivr.callflow.outcomes import ordered
from ivr.campaign.clock import Clock, Timer
from ivr.campaign.planning import Plan
from ivr.campaign.retry_wait import RETRY_WAIT
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.sqlite import Store
from ivr.store.workers import in_store_thread

log = logging.getLogger(__name__)
Subscriber = Callable[["Snapshot"], None]
# The rate is never computed over less than this: the first call 0.1 s into a run is not
# 600 calls a minute (nor its ETA a few seconds); early figures err low, then converge.
MIN_RATE_SPAN_S = 20.0
COUNT_SHARE = 20  # an outcome count waits 20 times its own cost: at most ~5 % of the time
COUNT_GAP_MAX_S = 30.0  # but never longer: one count that waited on a lock (a VACUUM
# after an erasure) must not freeze the live counts for 20 times that wait


@dataclass(frozen=True)
class NodeSnapshot:
    name: str
    up: bool
    in_flight: int
    cap: int          # the node's own channel cap; 0 = none
    holding: str = ""  # why no call goes to this node now ("" = it takes calls)
    controller: str = ""  # the controller placing these calls (store.controller_id)


@dataclass(frozen=True)
class Snapshot:
    campaign: str
    at: datetime                      # when it was taken (the run's clock)
    started_at: datetime
    seq: int                          # 1, 2, ...: order of publication
    nodes: tuple[NodeSnapshot, ...]
    in_flight: int
    max_concurrent: int
    outcomes: tuple[tuple[str, int], ...]  # this run's attempts per outcome, table order
    originated: int                   # calls placed by this run
    rate_per_min: float               # calls placed per minute over the recent window
    status: str                       # running|waiting|holding|paused|stopping|finished|stopped
    paused: str = ""                  # the store refuses writes: why
    console: str = ""                 # the web console holds the run: why (paused, standby)
    holding: str = ""                 # no node takes calls: why (down, holding, reconciling)
    waiting: str = ""                 # nobody due: the plan's reasons (outside window, ...)
    stopping: bool = False            # the operator asked to stop: no new calls, draining
    next_retry: datetime | None = None
    remaining: int = 0                # contacts due now or waiting for a retry
    eta_s: float | None = None        # remaining / rate
    stopped: bool = False             # the run is over (operator or finished)
    finished: bool = False            # over because nobody is left to call now
    stopped_by: str = ""              # operator | finished | carrier, once over
    why: str = ""                     # why nobody (more) is called, once over
    last_problem: str = ""            # the last store problem of the run, kept after recovery

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.outcomes)

    @property
    def done(self) -> int:
        return sum(n for _, n in self.outcomes)


@dataclass
class _Facts:
    """What the run told the state since the start (mutable, private)."""
    originated: int = 0
    paused: str = ""
    holding: str = ""
    waiting: str = ""
    stopping: bool = False
    console: str = ""
    next_retry: datetime | None = None
    remaining: int = 0
    stopped_by: str = ""
    why: str = ""
    last_problem: str = ""
    placed: deque[float] = field(default_factory=deque)  # monotonic times of recent calls


class RunState:
    def __init__(self, campaign: str, store: Store, clock: Clock, *, max_concurrent: int,
                 nodes: Callable[[], tuple[NodeSnapshot, ...]] = tuple,
                 since_id: int | None = None, every_s: float = 1.0, min_gap_s: float = 0.2,
                 count_every_s: float = 1.0,
                 rate_window_s: float = 60.0) -> None:
        self.campaign = campaign
        self.store = store
        self.clock = clock
        self.max_concurrent = max_concurrent
        self.nodes = nodes  # the dialer's per-node view, sampled at each snapshot
        # Attempts after this id are this run's: counted per outcome by the store.
        self.since_id = store.last_call_id(campaign) if since_id is None else since_id
        # ... and placed by this controller (store.controller_id, set while the run holds the
        # store; None: anyone's): with several controllers on one campaign, each counts the
        # outcomes of the calls it placed, as it counts `originated`.
        self.controller: str | None = getattr(store, "controller_id", None)
        self.every_s, self.min_gap_s, self.rate_window_s = every_s, min_gap_s, rate_window_s
        self.count_every_s = count_every_s
        self._counted_at = float("-inf")  # clock.monotonic() of the last outcome count read
        self._count_gap = count_every_s  # grows with what a count costs (COUNT_SHARE)
        self.started_at = clock.now()
        self._t0 = clock.monotonic()
        self._facts = _Facts()
        self._counts: tuple[tuple[str, int], ...] = ()
        # PostgreSQL (store.remote): the counts are read in a worker thread, never on the loop;
        # a snapshot shows the last ones read (count_now before the final one).
        self.remote = bool(getattr(store, "remote", False))
        self._counting: asyncio.Task[None] | None = None
        # Reads numbered as they start, applied only if newer than the last applied: a slow
        # background read never lands after a later one (count_now before the final snapshot).
        self._count_lock = threading.Lock()
        self._count_started = self._count_applied = 0
        self._closed = False
        self._subscribers: list[Subscriber] = []
        self._last_at = float("-inf")
        self._pending: Timer | None = None
        self._ticker: asyncio.Task | None = None
        self._seq = 0
        self.last: Snapshot | None = None

    # -- the run's side ---------------------------------------------------------------------------
    def called(self) -> None:
        self._facts.originated += 1
        self._facts.placed.append(self.clock.monotonic())
        self.changed()

    def planned(self, p: Plan) -> None:
        f = self._facts
        f.next_retry = p.next_retry()
        reasons = p.reasons()
        f.remaining = len(p.due) + reasons.get(RETRY_WAIT, 0)
        f.waiting = "" if p.due else ", ".join(
            f"{n} {r.replace('_', ' ')}" for r, n in reasons.most_common())
        self.changed()

    def set(self, *, paused: str | None = None, holding: str | None = None,
            stopping: bool | None = None, console: str | None = None) -> None:
        """Record a pause (store), a hold (nodes), an operator stop or the console holding the
        run (run_control.py); "" clears."""
        f = self._facts
        if console is not None:
            f.console = console
        if paused is not None:
            f.paused = paused
            f.last_problem = paused or f.last_problem
        if holding is not None:
            f.holding = holding
        if stopping is not None:
            f.stopping = stopping
        self.changed()

    def finish(self, stopped_by: str, why: str, last_problem: str = "") -> Snapshot:
        """The run is over: publish the final snapshot (the one the report reads)."""
        f = self._facts
        f.stopped_by, f.why = stopped_by, why
        f.last_problem = last_problem or f.last_problem
        f.paused = f.holding = f.console = ""
        self.close()
        return self.publish()

    # -- publishing -----------------------------------------------------------------------------
    def changed(self) -> None:
        """Something moved: publish now, or as soon as the rate limit allows."""
        wait = self._last_at + self.min_gap_s - self.clock.monotonic()
        if wait <= 0:
            self.publish()
        elif self._pending is None:
            self._pending = self.clock.call_later(wait, self._publish_pending)

    def _publish_pending(self) -> None:
        self._pending = None
        self.publish()

    def publish(self) -> Snapshot:
        snap = self.snapshot()
        self._last_at = self.clock.monotonic()
        self.last = snap
        for fn in list(self._subscribers):
            try:
                fn(snap)
            except Exception:  # a broken display must not stop the run
                log.exception("run-state subscriber failed")
        return snap

    def snapshot(self) -> Snapshot:
        self._seq += 1
        f, now_m = self._facts, self.clock.monotonic()
        nodes = tuple(self.nodes())
        rate = self._rate(now_m)
        over = bool(f.stopped_by)
        return Snapshot(
            campaign=self.campaign, at=self.clock.now(), started_at=self.started_at,
            seq=self._seq, nodes=nodes, in_flight=sum(n.in_flight for n in nodes),
            max_concurrent=self.max_concurrent, outcomes=self._outcomes(now_m, final=over),
            originated=f.originated, rate_per_min=rate, status=self._status(nodes),
            paused=f.paused, console=f.console, holding=f.holding, waiting=f.waiting,
            stopping=f.stopping,
            next_retry=f.next_retry, remaining=f.remaining,
            eta_s=f.remaining / rate * 60 if rate > 0 and f.remaining else None,
            stopped=over, finished=f.stopped_by == "finished", stopped_by=f.stopped_by,
            why=f.why, last_problem=f.last_problem)

    def _rate(self, now_m: float) -> float:
        placed = self._facts.placed
        while placed and placed[0] < now_m - self.rate_window_s:
            placed.popleft()
        span = max(min(self.rate_window_s, now_m - self._t0),
                   min(MIN_RATE_SPAN_S, self.rate_window_s))
        return len(placed) / span * 60 if span > 0 else 0.0

    def _outcomes(self, now_m: float, final: bool) -> tuple[tuple[str, int], ...]:
        """This run's counts per outcome. The query walks every attempt of the run, so it runs
        at most once per count_every_s (5 snapshots a second each counted a long run again)."""
        if not final and now_m - self._counted_at < self._count_gap:
            return self._counts
        if self.remote:  # counted off the loop: this snapshot shows the last counts read
            if not final and not self._closed and (
                    self._counting is None or self._counting.done()):
                self._counted_at = now_m
                self._counting = asyncio.get_running_loop().create_task(self.count_now())
                self._counting.add_done_callback(_say_if_failed)
            return self._counts
        self._counted_at = now_m
        self._read_counts()
        return self._counts

    def _read_counts(self) -> None:
        with self._count_lock:
            self._count_started += 1
            mine = self._count_started
        started = time.perf_counter()
        try:
            counts = self.store.outcome_counts(self.campaign, since_id=self.since_id,
                                               controller=self.controller)
        except STORE_ERRORS as exc:  # store away: keep the last counts, the run says paused
            log.debug("outcome counts unavailable: %s", exc)
            return
        # The query walks every attempt of the run: 157 ms a second at 300,000 on SQLite, on
        # the event loop, night and day under `--wait`. The next waits COUNT_SHARE times as
        # long as this one took, so counting keeps to a small share of the loop (or of the
        # database) however long the run; the final snapshot is counted whatever the gap.
        took = time.perf_counter() - started  # a lock waited for counts too: capped
        self._count_gap = min(COUNT_GAP_MAX_S, max(self.count_every_s, COUNT_SHARE * took))
        with self._count_lock:
            if mine > self._count_applied:  # else a read started later already landed
                self._count_applied, self._counts = mine, tuple(ordered(counts).items())

    async def count_now(self) -> None:
        """Read the counts in a worker thread (remote store; the final snapshot's first)."""
        await in_store_thread(self._read_counts)

    def _status(self, nodes: tuple[NodeSnapshot, ...]) -> str:
        f = self._facts
        if f.stopped_by:
            return "finished" if f.stopped_by == "finished" else "stopped"
        if f.stopping:
            return "stopping"
        if f.paused or f.console:
            return "paused"
        if f.holding:
            return "holding"
        if f.waiting and not any(n.in_flight for n in nodes):
            return "waiting"
        return "running"

    # -- readers --------------------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call `fn` with every snapshot from now on; returns the unsubscribe function."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """Every snapshot from now on, up to and including the final one."""
        queue: asyncio.Queue[Snapshot] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                snap = await queue.get()
                yield snap
                if snap.stopped:
                    return
        finally:
            unsubscribe()

    # -- the heartbeat ----------------------------------------------------------------------------
    def start(self) -> None:
        """Publish now and then at least every `every_s` until `close`."""
        self.publish()
        self._ticker = asyncio.get_running_loop().create_task(
            self._tick(self.clock.monotonic() + self.every_s))

    async def _tick(self, deadline: float) -> None:
        while True:  # fixed deadlines: a late wake-up does not push the next one back
            await self.clock.sleep(deadline - self.clock.monotonic())
            self.publish()
            deadline = max(deadline + self.every_s, self.clock.monotonic())

    def close(self) -> None:
        self._closed = True
        if self._counting is not None:
            self._counting.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


def _say_if_failed(task: asyncio.Task[None]) -> None:
    """A background count that failed otherwise than on the store (which it says itself)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("outcome counts failed: %r", task.exception())
