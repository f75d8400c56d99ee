"""The run's Originates in the air (run.py claims, this sends): each leaves at its pacing slot,
one interval after the previous one's departure, and up to a window of them await their
Response at once. One claim per Originate (the batched claim of 9c29f82 was taken out: it
outran a node's max_channels and rang after a soft stop; README, Speed)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ivr.campaign.clock import Clock
from ivr.campaign.planning import Claim
from ivr.campaign.run_control import RunControl
from ivr.errors import PbxError

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer

log = logging.getLogger(__name__)
# Originates awaiting their Response at once. One at a time, a saturated Asterisk took ~30 a
# second (bench_ivr); stock panoramisk sends them all at once. The window starts at one (the
# first call of a run meets a PBX that may be refusing) and doubles with each success.
SEND_WINDOW = 32
# An Originate that leaves longer than this after its claim judged it (a slow claim, a pacing
# lowered in the console: up to one interval) has the calendar rules checked again, on the
# claim's row: the calling window may have closed meanwhile. A quicker one leaves on the
# claim's verdict.
RECHECK_AFTER_S = 1.0


class Sender:
    """One run's Originates. `on_called`: one was sent and accepted; `tick`: the run's state
    changed (a claim refused at dial time, a call placed)."""

    def __init__(self, dialer: Dialer, clock: Clock, control: RunControl,
                 hard_stop: asyncio.Event, on_called: Callable[[], None],
                 tick: Callable[[], None]) -> None:
        self.dialer, self.clock, self.control, self.hard_stop = dialer, clock, control, hard_stop
        self.on_called, self.tick = on_called, tick
        self.left_at = float("-inf")  # when the last Originate left (pacing)
        self.sending: set[asyncio.Task[None]] = set()  # Originates awaiting their Response
        self.sent_one = asyncio.Event()
        self.window = 1
        self.failure: BaseException | None = None  # an Originate task's unexpected error
        self.answering = 0  # Originates sent and still awaiting their Response

    async def leave(self, claim: Claim, send: Coroutine[Any, Any, None] | None,
                    judged_at: float | None = None) -> bool:
        """A claimed call's Originate, at its pacing slot; False when a stop or a pause came
        first, or the calling window closed since the claim judged it (`judged_at`, the
        clock's monotonic() then): not sent, the attempt withdrawn."""
        if send is None or claim.call is None:  # refused at dial time (e.g. opted out)
            self.tick()
            return True
        # A PostgreSQL claim (worker thread) takes more or less time: pace the Originate too.
        # A stop ends the wait, a new pacing moves its end; a pause is seen at its end.
        await self.control.until_slot(self.left_at, self.hard_stop)
        if self.held():  # a stop or a pause came during the claim or the wait: never sent
            self.dialer.unsent(int(claim.call["id"]), send)
            return False
        contact = claim.contact
        if contact is not None and judged_at is not None and \
                self.clock.monotonic() - judged_at > RECHECK_AFTER_S:
            shut = self.dialer.shut_since_claim(contact)
            if shut:  # e.g. 20:00 passed during a long pacing wait: due when it reopens
                log.info("call %s not placed: the calling rules refuse it now (%s)",
                         claim.call["id"], shut)
                self.dialer.unsent(int(claim.call["id"]), send)
                return False
        task = asyncio.ensure_future(self._send(send))
        self.sending.add(task)
        task.add_done_callback(self._sent)
        await asyncio.sleep(0)  # the Originate leaves now, at its pacing slot
        while len(self.sending) >= self.window:
            self.sent_one.clear()
            await self.sent_one.wait()
        return True

    def held(self) -> bool:
        """Nothing new rings after a stop (soft or hard) or during a pause."""
        return self.control.stop.is_set() or self.hard_stop.is_set() or self.control.paused

    async def _send(self, send: Coroutine[Any, Any, None]) -> None:
        """One Originate. A success widens the window (doubling up to SEND_WINDOW); a failure
        narrows it to one and, with the PBX gone, holds the run until it is back."""
        self.left_at = self.clock.monotonic()  # its departure, which the next one keeps off
        self.answering += 1
        refused: PbxError | None = None
        try:
            await send
        except PbxError as exc:  # refused (settled) or unconfirmed (reconciled later)
            refused = exc
        finally:
            self._answered()
        if refused is not None:
            self.window = 1
            log.warning("dial: %s", refused)
            if not self.dialer.up():  # a stop or a hard stop does not wait for it
                await self.dialer.wait_up(30, self.control.stop, self.hard_stop)
            return
        self.window = min(self.window * 2, SEND_WINDOW)
        self.on_called()

    def _answered(self) -> None:
        self.answering -= 1
        self.sent_one.set()

    async def until_answered(self, timeout: float) -> None:
        """Until every Originate sent has its Response (or `timeout`): before a hard stop's
        hang-up, since a call whose Originate is still on its way may have no channel yet and
        would ring after the stop."""
        until = self.clock.monotonic() + timeout
        while self.answering and self.clock.monotonic() < until:
            self.sent_one.clear()
            await self.clock.wait(self.sent_one, timeout=until - self.clock.monotonic())

    def _sent(self, task: asyncio.Task[None]) -> None:
        self.sending.discard(task)
        self.sent_one.set()
        if not task.cancelled() and task.exception() is not None:  # a bug: the run fails
            log.error("Originate task failed", exc_info=task.exception())
            self.failure = self.failure or task.exception()

    def raise_failure(self) -> None:
        """An unexpected error in an Originate fails the run loudly, as it did when the
        run awaited each Originate itself."""
        if self.failure is not None:
            raise self.failure

    async def cancel(self) -> None:
        """Nothing of the run outlives it: an Originate still waiting (e.g. for a PBX that
        is gone) is cancelled; its attempt stays open for the next run's reconciliation."""
        tasks = list(self.sending)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
