"""A campaign run: who is due now, pacing, retries, stopping, and why nobody is called.

One `CampaignRun` per run. It plans, dials through the dialer, and tells the `RunState` what
it is doing; displays read the state's snapshots, never this loop.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ivr.campaign.clock import Clock
from ivr.campaign.dialer import Dialer
from ivr.campaign.nodes import Shares
from ivr.campaign.planning import Plan, plan
from ivr.campaign.run_control import CARRIER, RunControl
from ivr.campaign.run_end import RunEnd
from ivr.campaign.sending import Sender
from ivr.campaign.state import RunState
from ivr.campaign.why import why_nobody
from ivr.campaign.window_wait import WaitingPlan, told, until_allowed
from ivr.config import Config
from ivr.errors import StoreError
from ivr.store.plan_reader import PlanReader
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.sqlite import Store
from ivr.store.workers import in_store_thread

log = logging.getLogger(__name__)
T = TypeVar("T")
IDLE_REPLAN_S = 5.0   # with calls in flight and nobody due, re-plan at least this often
CAPACITY_POLL_S = 1.0  # while full, look at the stop event at least this often
NODE_BACK_S = 5.0     # while no node takes calls, wait this long for one before re-planning
# Refused claims in a row (another controller took the contact) that give their pacing slot
# back: beyond, each takes its slot again, so a plan whose every claim is refused is not
# walked in a burst of store transactions.
FREE_REFUSALS = 8
PLACED, REFUSED, REPLAN = "placed", "refused", "replan"


@dataclass
class RunReport:
    originated: int = 0
    stopped_by: str = ""
    why: str = ""
    paused: str = ""  # the last store problem that paused the run, if any


class CampaignRun(RunEnd):
    def __init__(self, cfg: Config, store: Store, dialer: Dialer, clock: Clock,
                 stop: asyncio.Event, hard_stop: asyncio.Event, state: RunState,
                 on_tick: Callable[[], None] = lambda: None,
                 control: RunControl | None = None, shares: Shares | None = None,
                 wait: bool = False, reader: PlanReader | None = None) -> None:
        self.cfg, self.store, self.dialer, self.clock = cfg, store, dialer, clock
        # SQLite: the plans' own connection (Store.plan_reader), read in a worker thread
        self.reader = reader
        self.wait = wait  # nobody callable now but later: wait for then (window_wait.py)
        self.stop, self.hard_stop, self.state, self.on_tick = stop, hard_stop, state, on_tick
        self.report = RunReport()
        # The console's pause and pacing (run_control.py); without one, the config's.
        self.control = control or RunControl(cfg, store, clock, stop, hard_stop, state)
        self.last_slot = float("-inf")  # when the last call passed its pacing slot
        self._refused = 0  # claims refused in a row
        # The campaign's caps shared with its other live controllers (nodes.Shares); none: alone.
        self.shares = shares or Shares(None, cfg.campaign.name, (), clock)
        self._away = False  # paused because a read or a claim found the store away
        self._planned_with = 0  # calls in flight when the last plan was read
        # The Originates in the air: pacing of departures, the window (ivr/campaign/sending.py)
        self.sender = Sender(dialer, clock, self.control, hard_stop, self._called, self._tick)
        # The drain's bound: the config's, else the longest possible call (the deadline).
        self.drain_s = cfg.dialer.drain_timeout_s or dialer.deadline_s
        # A trunk refusing every call (carrier_guard.py); nothing counts once the run stops.
        dialer.carrier.arm(self._carrier_stop,
                           lambda: self.stop.is_set() or self.hard_stop.is_set())
        self._carrier_told: asyncio.Future[None] | None = None  # the campaign's stop, written

    async def __call__(self) -> RunReport:
        while not self.stop.is_set():
            # The outcomes written so far count for the plan: on PostgreSQL they are committed
            # from a worker thread, and a plan read before they land sees those calls in flight.
            await self.dialer.writer.settled()
            self._planned_with = self.dialer.in_flight()
            try:
                p = await self._plan()
            except STORE_ERRORS as exc:  # PostgreSQL stopped: pause, plan again in a second
                await self._store_away(exc)
                continue
            if self._away:  # the store answers again
                self._away = False
                self.state.set(paused="")
            p = told(p) if self.wait else p  # --wait: the line says until when (window_wait)
            self.state.planned(p)
            if not p.due or self.dialer.ready():  # set by _nodes_ready, which ran only with
                self.state.set(holding="")        # someone due: no stale node line all night
            await self._dial_due(p)
            if self.stop.is_set() or not await self._wait_for_work(p):
                break
            self._tick()
        self.report.stopped_by = "operator" if self.stop.is_set() else "finished"
        self.state.set(stopping=self.stop.is_set())
        try:
            await self._drain()
        finally:
            await self.sender.cancel()
        return await self._finish()

    async def _plan(self) -> Plan:
        now = self.clock.now()
        return await self._read_plan(lambda store: plan(self.cfg, store, now))

    async def _read_plan(self, read: Callable[[Store], T]) -> T:
        """read(store) in a worker thread, so the loop keeps serving the calls in progress:
        on PostgreSQL over the store's pool, on SQLite over its plan reader; inline only in
        memory."""
        if self.reader is not None:
            return await in_store_thread(self.reader.call, read, self.reader.store)
        return await self.dialer.off_loop(read, self.store)

    def _carrier_stop(self, why: str) -> None:
        """A node's carrier refused call after call: no new calls (the stop every wait of this
        loop already wakes on), the calls in flight end as usual; _finish says why. Every
        controller of the campaign stops too, and the console shows it: the run control row
        says `stopped` (by "carrier"). A trip after another stop leaves that stop the run's."""
        if self.stop.is_set():
            return
        self.stop.set()
        self.state.set(stopping=True)
        self._carrier_told = asyncio.ensure_future(self.control.stop_all(CARRIER))

    def _tick(self) -> None:
        self.state.changed()
        self.on_tick()

    def _called(self) -> None:
        """An Originate was sent and accepted."""
        self.report.originated += 1
        self.state.called()
        self._tick()

    # -- dialling the plan ----------------------------------------------------------------------
    async def _dial_due(self, p: Plan) -> None:
        """Dial the due contacts in order; return early to re-plan when the world moved."""
        for contact in p.due:
            slot = self.last_slot
            if not await self._room() or not await self._pace():
                return
            if not await self._nodes_ready() or not await self._store_writable():
                return  # re-plan once it is back
            done = await self._dial(contact)
            if done == REPLAN:
                return
            if done == PLACED:
                self._refused = 0
                continue
            # Refused (e.g. another controller claimed it first): nobody was dialled, so the
            # slot is not spent; the next due contact may take it now.
            self._refused += 1
            if self._refused <= FREE_REFUSALS:
                self.last_slot = slot
            elif self._refused == FREE_REFUSALS + 1:
                return  # the plan is stale: read it again

    async def _room(self) -> bool:
        """Wait while max_concurrent calls are in flight or the console pauses the run; False
        on stop, and after a pause (re-plan: the world moved on meanwhile)."""
        ctl, paused = self.control, False
        while (ctl.paused or self.dialer.in_flight() >=
               self.shares.max_concurrent(ctl.max_concurrent)) and not self.stop.is_set():
            paused = paused or ctl.paused
            problem = self.dialer.writer.problem or self.store.unreachable()
            if problem:  # full, and the store is away: say it now
                self._say_away(problem)
            self.dialer.changed.clear()
            ctl.changed.clear()
            await self.clock.wait(self.dialer.changed, ctl.changed, self.stop,
                                  timeout=CAPACITY_POLL_S)
            self._tick()
        return not self.stop.is_set() and not paused

    async def _pace(self) -> bool:
        """Wait for the next calls_per_second slot (moved by a new pacing); False on stop.
        The rate is the campaign's: beside n-1 other live controllers, this one's slots are
        n intervals apart (Shares.interval), so together they keep the rate set for the
        carrier. The Originate's own wait (sending.py) keeps one interval after the last."""
        ctl = self.control
        while True:  # as ctl.until_slot, at this controller's share of the rate
            ctl.changed.clear()
            interval = self.shares.interval(ctl.interval, ctl.max_concurrent)
            left = self.last_slot + interval - self.clock.monotonic()
            if left <= 0 or self.stop.is_set():
                break
            await self.clock.wait(self.stop, ctl.changed, timeout=left)
        # From this call's own departure: after a longer wait (window, room, nodes), two
        # calls must not leave back to back.
        self.last_slot = max(self.clock.monotonic(), self.last_slot + interval)
        return not self.stop.is_set()

    async def _nodes_ready(self) -> bool:
        """No node takes calls (down, restarting, holding after a fault): wait a little, then
        re-plan. Every node taking calls full (their max_channels, summed, under
        max_concurrent): wait for a call to end, as _room does, with no re-plan (one twice a
        second was a whole plan on the event loop, on SQLite, every half second)."""
        dialer, ctl = self.dialer, self.control
        while dialer.only_full() and not self.stop.is_set() and not ctl.paused:
            self.state.set(holding=dialer.why_not_ready())
            dialer.changed.clear()
            ctl.changed.clear()
            await self.clock.wait(dialer.changed, ctl.changed, self.stop,
                                  timeout=CAPACITY_POLL_S)
            self._tick()
        if ctl.paused:  # paused meanwhile: _room waits for the resume, then a re-plan
            return False
        if dialer.ready():
            self.state.set(holding="")
            return True
        self.state.set(holding=dialer.why_not_ready() or "no node takes calls")
        await self.clock.wait(self.stop, timeout=0.5)
        await dialer.wait_up(NODE_BACK_S, self.stop)
        return False

    def _why_nobody_now(self, now: datetime, store: Store) -> str:
        """The final plan's one line (read as every plan is: _read_plan)."""
        return why_nobody(store, plan(self.cfg, store, now), self.cfg.campaign.name)

    async def _store_writable(self) -> bool:
        """The store refuses writes: no new calls until it takes them again."""
        away = self.store.unreachable()  # the heartbeat failed: nothing of ours has yet
        if away:
            await self._store_away(away)
            return False
        problem = self.dialer.writer.problem
        if not problem:
            return True
        self.report.paused = problem
        self.state.set(paused=f"store unavailable: {problem}")
        await self.clock.wait(self.dialer.writer.drained, self.stop, timeout=3600)
        self.state.set(paused="")
        return False  # re-plan: the world moved on while paused

    async def _store_away(self, exc: BaseException | str) -> None:
        """A read, a claim or the heartbeat failed with the store away: say so, wait a
        second."""
        why = " ".join(str(exc).split()) or type(exc).__name__
        self._say_away(why)
        self.report.paused = why
        self.state.set(paused=f"store unavailable: {why}")
        await self.clock.wait(self.stop, timeout=1.0)

    def _say_away(self, why: str) -> None:
        """Log it once per outage, not once a second; the snapshot shows it."""
        if not self._away:
            log.error("store unavailable (%s): pausing new calls", why)
            self._away = True
            self.state.set(paused=f"store unavailable: {why}")

    async def _dial(self, contact: dict[str, Any]) -> str:
        """One call: claimed here, its Originate sent in the background (up to the sender's
        window of them awaiting their Response at once). PLACED; REFUSED: the claim was
        refused, nothing dialled; REPLAN: the run must re-plan (store away, stop, pause)."""
        self.sender.raise_failure()
        self.dialer.writer.flush()
        judged_at = self.clock.monotonic()  # the claim judges at about this time
        try:
            claim, send = await self.dialer.place(contact)
        except STORE_ERRORS as exc:  # nothing was sent: pause, then re-plan
            await self._store_away(exc)
            return REPLAN
        self.state.set(paused="")
        refused = send is None or claim.call is None
        if not await self.sender.leave(claim, send, judged_at):
            return REPLAN
        return REFUSED if refused else PLACED

    # -- between plans --------------------------------------------------------------------------
    async def _wait_for_work(self, p: Plan) -> bool:
        """Nobody due: wait until somebody may be; False when the run is finished."""
        if p.due:
            return True
        nxt = p.next_retry()
        if not self.dialer.in_flight():
            # The plan saw calls in flight that ended while it was read off the loop, or
            # outcomes the store has not taken yet: not the end, plan again on their outcomes.
            if self._planned_with or not await self._store_writable():
                return True
            if isinstance(p, WaitingPlan) and p.until is not None:  # --wait: the window
                await until_allowed(p.until, self.clock, self.stop,  # reopens, a holiday ends
                                    self.dialer.changed, self.control.changed)
                return True
            if nxt is None:
                self.report.why = await self.dialer.off_loop(why_nobody, self.store, p,
                                                             self.cfg.campaign.name)
                return False
            wait = max(0.0, (nxt - self.clock.now()).total_seconds())
            self.dialer.changed.clear()
            await self.clock.wait(self.dialer.changed, self.stop,
                                  timeout=min(wait, IDLE_REPLAN_S) + 0.05)
            return True
        # Calls in flight, nobody due: re-plan only when that can change.
        wait = (nxt - self.clock.now()).total_seconds() if nxt else IDLE_REPLAN_S
        await self._until_due(self.clock.monotonic() + min(max(wait, 0.05), IDLE_REPLAN_S))
        return True

    async def _until_due(self, until: float) -> None:
        """Wait until `until`, every call ended, or a retry planned meanwhile comes due: a
        call settled now with a retry is due only after its delay, so it does not re-plan at
        once (a re-plan reads every pending contact: one per settled call would cost as much
        as the calls in flight, for each one of them)."""
        dialer = self.dialer
        dialer.idle.clear()
        while not self.stop.is_set():
            dialer.retry_planned.clear()
            dialer.retry_soonest = math.inf
            left = until - self.clock.monotonic()
            if left <= 0:
                return
            await self.clock.wait(dialer.retry_planned, dialer.idle, self.stop, timeout=left)
            if dialer.idle.is_set() or not dialer.retry_planned.is_set():
                return
            until = min(until, max(dialer.retry_soonest, self.clock.monotonic() + 0.05))


def _plan_reader(store: Store) -> PlanReader | None:
    """The SQLite store's connection for plans, or None (in memory, or it cannot be opened:
    then the plans run on the loop, as before, and the log says why once)."""
    reader = getattr(store, "plan_reader", None)
    try:
        return reader() if reader is not None else None
    except StoreError as exc:
        log.warning("%s: plans run on the event loop (calls in progress wait for each)", exc)
        return None


async def run(cfg: Config, store: Store, dialer: Dialer, clock: Clock, stop: asyncio.Event,
              hard_stop: asyncio.Event, state: RunState | None = None,
              on_tick: Callable[[], None] = lambda: None, standby: bool = False,
              wait: bool = False, resume: bool = False) -> RunReport:
    """Run the campaign until nobody is due any more or the operator stops it (Ctrl-C or
    the console). `standby`: dial nothing before the console's Start; `wait`: when nobody
    can be called now but somebody later, wait for then instead of ending; `resume`: start
    over the console's pause (RunControl.begin)."""
    state = state or RunState(cfg.campaign.name, store, clock,
                              max_concurrent=cfg.dialer.max_concurrent,
                              nodes=dialer.node_snapshots)
    state.start()
    # Its tick keeps the IVR's recent oppositions (callflow/opposed.Opposed, app.agi_app's wiring);
    # begin() reads them first, before any claim
    control = RunControl(cfg, store, clock, stop, hard_stop, state,
                         opposed=dialer.opposed)
    shares = Shares(store, cfg.campaign.name, dialer.nodes.values(), clock, dialer.off_loop)
    watches: list[asyncio.Future[None]] = []
    reader = _plan_reader(store) if not dialer.remote else None
    try:
        await control.begin(standby, resume)
        watches.append(asyncio.ensure_future(control.watch()))
        await shares.refresh()  # beside other controllers: their share, not the whole cap
        watches.append(asyncio.ensure_future(shares.watch(stop)))
        return await CampaignRun(cfg, store, dialer, clock, stop, hard_stop, state, on_tick,
                                 control, shares, wait, reader)()
    finally:
        for watch in watches:
            watch.cancel()
        if reader is not None:
            reader.close()  # a plan still reading (a forced stop) is interrupted first
        state.close()
        await control.close()
