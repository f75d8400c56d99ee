"""A campaign run: who is due now, pacing, retries, stopping, and why nobody is called."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ivr.config import Config
from ivr.campaign.dialer import Dialer
from ivr.errors import PbxError
from ivr.store.safe_writes import STORE_ERRORS
from ivr.campaign.planning import plan, verdict_for, why_nobody
from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
IDLE_REPLAN_S = 5.0  # with calls in flight and nobody due, re-plan at least this often


@dataclass
class RunReport:
    originated: int = 0
    stopped_by: str = ""
    why: str = ""
    paused: str = ""  # the last store problem that paused the run, if any


async def run(cfg: Config, store: Store, dialer: Dialer, clock: Callable[[], datetime],
              stop: asyncio.Event, hard_stop: asyncio.Event,
              on_tick: Callable[[], None] = lambda: None) -> RunReport:
    report = RunReport()
    interval = 1.0 / cfg.dialer.calls_per_second
    next_slot = time.monotonic()
    while not stop.is_set():
        dialer.writer.flush()  # outcomes batched this turn count for the plan
        p = plan(cfg, store, clock())
        for contact in p.due:
            while len(dialer.inflight) >= cfg.dialer.max_concurrent and not stop.is_set():
                dialer.changed.clear()
                await _wait_any(dialer.changed, stop, timeout=1.0)
                on_tick()
            if stop.is_set():
                break
            delay = next_slot - time.monotonic()
            if delay > 0:
                await _wait_any(stop, timeout=delay)
            next_slot = max(next_slot + interval, time.monotonic())
            if stop.is_set():
                break
            if not dialer.ami.connected or dialer.holding():  # PBX restarting, link down
                await _wait_any(stop, timeout=0.5)
                await dialer.ami.wait_connected(timeout=5.0)
                break  # re-plan once it is back
            if dialer.writer.problem:  # the store refuses writes: no new calls until it is back
                report.paused = dialer.writer.problem
                await _wait_any(dialer.writer.drained, stop, timeout=3600)
                break  # re-plan: the world moved on while paused
            now = clock()
            dialer.writer.flush()
            verdict = verdict_for(cfg, store, contact, now,  # re-checked at dial time
                                  p.history.get(contact["number"]))
            if not verdict.allowed:
                continue
            try:
                await dialer.dial(contact)
            except STORE_ERRORS as exc:  # nothing was sent: pause, then re-plan
                log.error("store unavailable (%s): pausing new calls", exc)
                report.paused = str(exc)
                await _wait_any(stop, timeout=1.0)
                break
            except PbxError as exc:  # refused (settled) or unconfirmed (reconciled later)
                log.warning("dial %s: %s", contact["number"], exc)
                if not dialer.ami.connected:
                    await dialer.ami.wait_connected(timeout=30)
                continue
            report.originated += 1
            on_tick()
        if stop.is_set():
            break
        if not p.due and not dialer.inflight:
            nxt = p.next_retry()
            if nxt is None:
                report.why = why_nobody(store, p)
                break
            wait = max(0.0, (nxt - clock()).total_seconds())
            dialer.changed.clear()
            await _wait_any(dialer.changed, stop, timeout=min(wait, 5.0) + 0.05)
        elif not p.due:  # calls in flight, nobody due: re-plan only when that can change
            nxt = p.next_retry()
            wait = (nxt - clock()).total_seconds() if nxt else IDLE_REPLAN_S
            dialer.retry_planned.clear()
            dialer.idle.clear()
            await _wait_any(dialer.retry_planned, dialer.idle, stop,
                            timeout=min(max(wait, 0.05), IDLE_REPLAN_S))
        on_tick()
    report.stopped_by = "operator" if stop.is_set() else "finished"
    # Let calls in flight finish; a second Ctrl-C hangs them up.
    while dialer.inflight or dialer.writer.pending:
        if hard_stop.is_set() and dialer.inflight and not dialer.ami.connected:
            log.error("%d call(s) in flight but the PBX is unreachable: stopping; the next "
                      "run reconciles them", len(dialer.inflight))
            break
        if dialer.writer.pending and not dialer.inflight and hard_stop.is_set():
            log.error("%d outcome(s) not written (%s): those attempts will be reconciled as "
                      "`error` by the next run", len(dialer.writer.pending),
                      dialer.writer.problem)
            break
        if hard_stop.is_set():
            await dialer.hangup_all()
            hard_stop.clear()
        dialer.changed.clear()
        await _wait_any(dialer.changed, hard_stop, timeout=1.0)
        on_tick()
    dialer.writer.flush()
    if not report.why:
        report.why = why_nobody(store, plan(cfg, store, clock()))
    report.paused = report.paused or dialer.writer.last_problem
    return report


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
