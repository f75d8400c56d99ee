"""The end of a campaign run (CampaignRun's, ivr/campaign/run.py): the drain that lets calls in
flight finish, the hang-up of a hard stop and its grace, and the final report's why. A mixin of
CampaignRun, apart so that each module stays readable; it reads the run's own attributes."""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ivr.campaign.run_control import CARRIER
from ivr.store.safe_writes import STORE_ERRORS, one_line

if TYPE_CHECKING:
    from ivr.campaign.run import RunReport

log = logging.getLogger("ivr.campaign.run")  # the run's own lines, as before
HANGUP_GRACE_S = 5.0  # after the hard stop's hang-up, calls get this long to report their end
# ... and the hang-up is sent again this often meanwhile: an Async Originate's channel may
# not exist yet when its Response came ("No such channel"), then ring after the stop.
HANGUP_AGAIN_S = 0.5


class RunEnd:
    """CampaignRun's stopping half (its attributes: dialer, clock, stop, hard_stop, state,
    report, control, cfg, store, sender, drain_s, _carrier_told, _read_plan)."""
    dialer: Any
    clock: Any
    stop: asyncio.Event
    hard_stop: asyncio.Event
    state: Any
    report: Any
    control: Any
    cfg: Any
    store: Any
    drain_s: float
    _carrier_told: asyncio.Future[None] | None
    _read_plan: Any  # CampaignRun's: a read in the plan's worker thread
    _why_nobody_now: Any  # CampaignRun's: the final plan's line (its `plan`, tests patch it)

    async def _drain(self) -> None:
        """Let calls in flight finish, for dialer.drain_timeout_s at most; then, or on a hard
        stop (second Ctrl-C / SIGTERM), hang them up. What still has not ended HANGUP_GRACE_S
        after the hang-up is left to the next run's reconciliation."""
        dialer = self.dialer
        limit = self.clock.monotonic() + self.drain_s
        hung_up_at: float | None = None
        sent_at = 0.0
        while await self._unsettled():
            if not self.hard_stop.is_set() and self.clock.monotonic() >= limit:
                log.warning("calls still in flight after dialer.drain_timeout_s (%g s): "
                            "hanging them up", self.drain_s)
                self.hard_stop.set()
            if self._give_up(hung_up_at):
                break
            if self.hard_stop.is_set() and hung_up_at is None:
                # Originates still awaiting their Response may have no channel yet: the
                # hang-up would miss them, and they would ring after the stop.
                await self.sender.until_answered(HANGUP_GRACE_S)
                hung_up_at = sent_at = self.clock.monotonic()
                await dialer.hangup_all()
            elif hung_up_at is not None and self.clock.monotonic() - sent_at >= HANGUP_AGAIN_S:
                sent_at = self.clock.monotonic()  # the calls not ended yet, again
                await dialer.hangup_all()
            dialer.changed.clear()
            wake = (dialer.changed,) if hung_up_at is not None else (dialer.changed,
                                                                      self.hard_stop)
            await self.clock.wait(*wake, timeout=min(
                HANGUP_AGAIN_S if hung_up_at is not None else 1.0,
                max(limit - self.clock.monotonic(), 0.05)))
            self._tick()

    async def _unsettled(self) -> bool:
        """Calls in flight, or outcomes not in the store. On PostgreSQL the last ones are still
        on their way to a worker thread when the last call ends: they must land, or fail and
        be queued for retry (then waited for as any queued write), before the run ends."""
        self.sender.raise_failure()
        if self.dialer.in_flight() or self.sender.sending:
            return True
        await self.dialer.writer.settled()
        return bool(self.dialer.writer.pending)

    def _give_up(self, hung_up_at: float | None) -> bool:
        """On a hard stop, what cannot be finished now is left to the next run."""
        dialer = self.dialer
        if not self.hard_stop.is_set():
            return False
        if dialer.in_flight() and not dialer.up():
            log.error("%d call(s) in flight but the PBX is unreachable: stopping; the next "
                      "run reconciles them", dialer.in_flight())
            return True
        if dialer.writer.pending and not dialer.in_flight():
            log.error("%d outcome(s) not written (%s): those attempts will be reconciled as "
                      "`error` by the next run", len(dialer.writer.pending),
                      dialer.writer.problem)
            return True
        if hung_up_at is not None and self.clock.monotonic() - hung_up_at >= HANGUP_GRACE_S:
            log.error("%d call(s) did not end after the hang-up: stopping; the next run "
                      "reconciles them", dialer.in_flight())
            return True
        return False

    async def _finish(self) -> RunReport:
        self.dialer.writer.flush()
        await self._carrier_stopped()  # first: no store read, so a store away cannot hide it
        try:
            if self.dialer.remote:  # the counts and the last plan off the loop, after the writes
                await self.dialer.writer.settled()
                await self.state.count_now()
            if not self.report.why:
                now = self.clock.now()
                self.report.why = await self._read_plan(
                    lambda store: self._why_nobody_now(now, store))
        except STORE_ERRORS as exc:  # a stop while the store is away is still a stop
            self.report.why = self.report.why or f"store unavailable: {one_line(exc)}"
        self.report.paused = self.report.paused or self.dialer.writer.last_problem
        self.state.finish(self.report.stopped_by, self.report.why, self.report.paused)
        return self.report

    async def _carrier_stopped(self) -> None:
        """The breaker's stop, when it came before any other: this run's, or another
        controller's of the campaign (the run control row's actor)."""
        if self._carrier_told is not None:
            await self._told_or_given_up(self._carrier_told)
            self.report.stopped_by, self.report.why = "carrier", self.dialer.carrier.why
        elif self.control.stopped_by == CARRIER and self.report.stopped_by == "operator":
            self.report.stopped_by = "carrier"
            self.report.why = ("another controller of the campaign stopped it: its carrier "
                               "or its Asterisk nodes failed call after call (its log says "
                               "why)")

    async def _told_or_given_up(self, told: asyncio.Future[None]) -> None:
        """The campaign's stop is retried while the store is away (stop_all); the run ending
        gives it a few polls more, then says the other controllers were not told."""
        done, _ = await asyncio.wait({told}, timeout=4 * self.control.poll_s)
        if not done:
            told.cancel()
            log.error("the campaign's other controllers were not told to stop (store away): "
                      "stop them from the console or with Ctrl-C")
