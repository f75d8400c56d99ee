"""The inbound opposition line between campaign runs (`ivr serve`), and what every end of a
FastAGI server owes it: the callers already on the line finish, and the writes a store that is
away could not take yet (an opposition among them) are retried a while, then said."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone

from ivr.callflow.agi_callback import CallbackHandler
from ivr.campaign.stopping import SIGNALS
from ivr.config import Config
from ivr.errors import PbxError
from ivr.store.safe_writes import SafeWriter
from ivr.store.sqlite import Store
from ivr.telephony.agi_auth import callback_secret
from ivr.telephony.fastagi import AgiApplication, serve

log = logging.getLogger(__name__)
# A caller on the opposition line when a run or `ivr serve` stops: the notice, the wait for the
# key and the confirmation take ~25 s; the key must not be lost to the stop.
CALLBACK_DRAIN_S = 30.0
STORE_SETTLE_S = 10.0  # at a stop, writes the store could not take yet are retried this long


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def serve_forever(cfg: Config, store: Store, clock: Callable[[], datetime] = utcnow,
                        stop: asyncio.Event | None = None,
                        listening: Callable[[], None] | None = None) -> None:
    """FastAGI only (the inbound opposition line between campaign runs), until Ctrl-C.
    `listening` is called once the port is bound: saying "serving" earlier would be a lie
    when the port is taken (the run serving the line already)."""
    agi = AgiApplication(allowed_peers=cfg.agi.allowed_peers,
                         pbx_hosts=[n.host for n in cfg.pbx.node_list()])
    # As in a run: an opposition a store that is away (locked, restarting) cannot take now is
    # queued and retried, never dropped, and never waited for on the event loop.
    writer = SafeWriter(store.transaction)
    agi.add_route("callback", CallbackHandler(store, cfg.default_region, clock,
                                              commit=writer.committed,
                                              secret=callback_secret(cfg),
                                              optout_key=cfg.flow.optout_key))
    try:
        server = await serve(agi, cfg.agi.host, cfg.agi.port)
    except OSError as exc:
        raise PbxError(f"cannot listen for FastAGI on {cfg.agi.host}:{cfg.agi.port} "
                       f"({exc.strerror}): is `ivr run` active? it serves the line too") from None
    if listening is not None:
        listening()
    stop, hard = stop or asyncio.Event(), asyncio.Event()
    install_signals(stop, hard)  # a second Ctrl-C cuts the waits below short
    try:
        await stop.wait()
    finally:
        server.close()
        await drain_callbacks(agi, hard)
        await settle_writes(writer, STORE_SETTLE_S, hard)
        await server.wait_closed()


async def drain_callbacks(agi: AgiApplication, interrupt: asyncio.Event | None = None) -> None:
    """Let callers on the opposition line finish (bounded; `interrupt` ends the wait), saying so."""
    if agi.in_route.get("callback", 0):
        log.warning("waiting up to %g s for %d caller(s) on the opposition line (Ctrl-C again: "
                    "stop now)", CALLBACK_DRAIN_S, agi.in_route["callback"])
        left = await agi.drain("callback", CALLBACK_DRAIN_S, interrupt)
        if left:
            log.error("%d caller(s) still on the opposition line were cut off", left)


async def settle_writes(writer: SafeWriter, timeout_s: float,
                        interrupt: asyncio.Event | None = None) -> None:
    """The writes made so far, committed; queued ones (the store away) retried for up to
    timeout_s, or until `interrupt`; what is left then is said, not silently dropped."""
    await writer.settled()
    if not writer.pending:
        return
    log.warning("store unavailable (%s): retrying %d write(s) for up to %g s before stopping",
                writer.problem, len(writer.pending), timeout_s)
    waits = [asyncio.ensure_future(writer.drained.wait())]
    if interrupt is not None:
        waits.append(asyncio.ensure_future(interrupt.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if writer.pending:
        log.error("store unavailable (%s): %d write(s) lost at this stop (an opposition from "
                  "the line among them is not recorded; an outcome is settled by the next run)",
                  writer.problem, len(writer.pending))


def install_signals(stop: asyncio.Event, hard_stop: asyncio.Event) -> None:
    """First Ctrl-C: no new calls. Second: hang up the calls in flight."""
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        if stop.is_set():
            hard_stop.set()
        else:
            stop.set()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_sigint)
