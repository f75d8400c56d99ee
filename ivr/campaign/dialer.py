"""Places calls on PBX nodes and settles every attempt that the IVR handler does not.

Correlation: each attempt's calls.id is passed as CALL_ID (channel variable and AGI argument) and
its channel_id is the Originate ChannelId, i.e. the Uniqueid of the IVR-side channel. The
dialer speaks only the node seam (ivr/telephony/node.py): typed requests, events and errors.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ivr.callflow import outcomes
from ivr.callflow.late_causes import StoredCauses
from ivr.campaign import node_events, node_guard, planning, reconcile, settle
from ivr.campaign.carrier_guard import CarrierGuard
from ivr.campaign.clock import Clock
from ivr.campaign.lost_claim import withdrawal
from ivr.campaign.nodes import (FAULT_HOLD_S, InFlight, NodeState,  # noqa: F401
                                dial_string, hold_after_fault, pick, safe_caller_name,
                                safe_value, went_down)
from ivr.campaign.state import NodeSnapshot
from ivr.config import Config
from ivr.store.safe_writes import STORE_ERRORS, SafeWriter
from ivr.store.sqlite import Store
from ivr.store.workers import in_store_thread
from ivr.telephony import contract
from ivr.telephony.node import (ActionTimeout, NodeDisconnected, NodeEvent, NotSent,
                                OriginateRefused, OriginateRequest, OriginateResult, PbxNode)

if TYPE_CHECKING:  # the IVR's module, not needed at run time
    from ivr.callflow.opposed import Opposed

log = logging.getLogger(__name__)
T = TypeVar("T")


class Dialer:
    def __init__(self, cfg: Config, store: Store, nodes: PbxNode | Iterable[PbxNode],
                 clock: Clock, agi_url: str, deadline_s: float = math.inf) -> None:
        self.cfg = cfg
        self.deadline_s = deadline_s  # the longest possible call (deadline.longest_call_s)
        self.store = store
        self.clock = clock
        self.agi_url = agi_url
        node_list = [nodes] if isinstance(nodes, PbxNode) else list(nodes)
        self.nodes: dict[str, NodeState] = {n.name: NodeState(n, clock) for n in node_list}
        self._states = list(self.nodes.values())
        self._turn = 0  # round-robin among nodes equally free
        # PostgreSQL: every store call of the dial path runs in a worker thread (the loop never
        # waits on the network); SQLite stays inline, where it is fastest (bench_ivr).
        self.remote = bool(getattr(store, "remote", False))
        self.by_call: dict[int, InFlight] = {}
        # The attempt rows claimed here, until their IVR session reads them (agi_gate): the
        # session needs no read of what the claim just wrote.
        self.claimed: dict[int, dict[str, Any]] = {}
        self.changed = asyncio.Event()        # an attempt settled: capacity freed
        self.retry_planned = asyncio.Event()  # an attempt settled with a retry time
        self.retry_soonest = math.inf  # clock.monotonic() of the earliest retry planned so far
        self.idle = asyncio.Event()           # nothing in flight any more
        self.originated = 0
        self.writer = SafeWriter(store.transaction)
        self.ivr_active: set[int] = set()  # attempts whose IVR handler is still running
        self.abandoned: set[int] = set()  # left open for a node's reconciliation (deadline.py)
        self.stored_causes = StoredCauses()  # the IVR's outcome writes tell it (app.agi_app)
        # The calls hangup_all hung up: their end is the run's, not the callee's word. Kept for
        # the dialer's life (one stop per run): an outcome may come after the flight is gone.
        self.cut_by_run: set[int] = set()
        # The IVR's recent oppositions (app.agi_app sets it); the run's tick keeps them (run.py)
        self.opposed: Opposed | None = None
        # The campaign's legal mentions as calls play them now (app.agi_app sets it): handed
        # to the dialplan, whose failsafe plays them to a callee the controller cannot serve.
        # The live prompt key -> sound: the outbound failsafe plays `legal`, and
        # `optout_confirm` once it journaled the callee's opposition key.
        self.sounds: Callable[[], Mapping[str, str]] = dict
        # Told once of each attempt whose outcome is written (outcome webhooks); must not block.
        self.on_settled: list[Callable[[int], None]] = []
        # a trunk refusing or never answering every call stops the run (run.py)
        self.carrier = CarrierGuard(ringing=self._ringing)
        # a node refusing every Originate, or whose prompts do not play, is taken out (its own)
        self.node_guard = node_guard.NodeGuard(self.carrier, self._states, cfg.pbx.sounds_dir)
        self._tasks: set[asyncio.Task] = set()
        self.closed = False  # the controller closed: no reconciliation starts or retries
        caller = cfg.campaign.caller_id
        safe_value("campaign.caller_id", caller)
        safe_caller_name(cfg.campaign.caller_name)
        self.caller_id = (f'"{cfg.campaign.caller_name}" <{caller}>'
                          if cfg.campaign.caller_name else caller)

    # -- node views -----------------------------------------------------------------------------
    @property
    def inflight(self) -> dict[str, InFlight]:
        """Every attempt in flight, by channel_id (one dict per node, merged when several)."""
        if len(self.nodes) == 1:
            return next(iter(self.nodes.values())).calls
        return {k: v for ns in self.nodes.values() for k, v in ns.calls.items()}

    def in_flight(self) -> int:
        return sum(len(ns.calls) for ns in self.nodes.values())

    def up(self) -> bool:
        """At least one node is up: the IVR's and the run's view of the PBX."""
        return any(ns.node.up for ns in self.nodes.values())

    def _ringing(self, node: str) -> set[int]:
        """The node's calls in flight not answered (yet): what the carrier breaker waits for."""
        ns = self.nodes.get(node)
        return {f.call_id for f in ns.calls.values() if not f.answered} if ns else set()

    def ready(self) -> bool:
        return any(ns.ready() for ns in self.nodes.values())

    def only_full(self) -> bool:
        """No node takes a call now, and one would once a call of its own ends."""
        return not self.ready() and any(ns.full() for ns in self.nodes.values())

    def why_not_ready(self) -> str:
        return "; ".join(filter(None, (ns.why_not_ready() for ns in self.nodes.values())))

    def node_snapshots(self) -> tuple[NodeSnapshot, ...]:
        """Each node as the run state publishes it."""
        me = str(getattr(self.store, "controller_id", "") or "")
        return tuple(NodeSnapshot(ns.name, ns.node.up, len(ns.calls), ns.node.max_channels,
                                  ns.why_not_ready(), me) for ns in self.nodes.values())

    async def wait_up(self, timeout: float, *unless: asyncio.Event) -> bool:
        """Until a node is up (True), `timeout` has passed, or one of `unless` is set: a stop
        must not wait for the PBX to come back."""
        if self.up():
            return True
        waits = [asyncio.ensure_future(ns.node.wait_up(timeout)) for ns in self.nodes.values()]
        stops = [asyncio.ensure_future(event.wait()) for event in unless]
        try:
            done, _ = await asyncio.wait(waits + stops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits + stops:
                w.cancel()
        return any(not w.cancelled() and w.exception() is None and w.result()
                   for w in done if w in waits)

    def _pick(self) -> NodeState:
        """The node for the next call: the most free relative to its cap, ties in turn."""
        if len(self._states) == 1:
            return self._states[0]
        self._turn += 1
        return pick(self._states, self.cfg.dialer.max_concurrent, self._turn)

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call: in a worker thread on a remote store, inline on SQLite."""
        if self.remote:
            return await in_store_thread(fn, *args)
        return fn(*args)

    # -- policy -------------------------------------------------------------------------------
    def retry_at(self, call: dict[str, Any], outcome: str) -> datetime | None:
        key = outcomes.traits(outcome).retry  # the outcome table names the delay
        if key is None or int(call["attempt"]) >= self.cfg.retry.max_attempts:
            return None
        delay = float(getattr(self.cfg.retry.delay_s, key))
        self.retry_soonest = min(self.retry_soonest, self.clock.monotonic() + delay)
        self.retry_planned.set()
        return self.clock.now() + timedelta(seconds=delay)

    def pbx_fault(self, hold_s: float = FAULT_HOLD_S) -> None:
        """The PBX tore a call down (shutdown, restart): see nodes.hold_after_fault."""
        hold_after_fault(self._states, self.clock.monotonic(), hold_s)

    async def pbx_went_down(self, within_s: float = 2.0, node: str | None = None) -> bool:
        """Did a node shut down or drop its link around now? See nodes.went_down."""
        return await went_down(self._states, self.clock, within_s, node)

    # -- originate ----------------------------------------------------------------------------
    async def dial(self, contact: dict[str, Any]) -> planning.Claim:
        """Claim an attempt (every rule re-checked, the row written first), then originate.
        A refused claim is returned as it is: nothing is dialled."""
        claim, send = await self.place(contact)
        if send is not None:
            await send
        return claim

    async def place(self, contact: dict[str, Any]
                    ) -> tuple[planning.Claim, Coroutine[Any, Any, None] | None]:
        """The claim (the attempt written and counted in flight before this returns) and the
        Originate still to send, as a coroutine: the run keeps several in the air at once
        instead of waiting for each Response (on a busy PBX, ~30 a second). None: refused."""
        channel = dial_string(self.cfg.dialer.dial_string, contact["number"])
        ns, now = self._pick(), self.clock.now()
        try:
            claim = await self.off_loop(planning.claim, self.cfg, self.store, contact, ns.name,
                                        now)
        except STORE_ERRORS:  # its COMMIT may have landed, its answer lost (lost_claim.py)
            self.writer.write(withdrawal(self.store, self.cfg.campaign.name,
                                         contact["number"], ns.name, now, self.by_call))
            raise
        if claim.call is None:
            return claim, None
        call = claim.call
        flight = InFlight(int(call["id"]), call["channel_id"], contact["number"], ns.name,
                          deadline=self.clock.monotonic() + self.deadline_s,
                          attempt=int(call["attempt"]))
        ns.add(flight)
        self.by_call[flight.call_id] = flight
        self.claimed[flight.call_id] = call
        self.idle.clear()
        return claim, self._originate(ns, flight, self._request(channel, flight,
                                                                claim.token or ""))

    def shut_since_claim(self, contact: dict[str, Any]) -> str:
        """Which calendar rule refuses `contact` now (its reason code, "" if they allow it):
        checked again before an Originate that waited long after its claim (sending.py)."""
        verdict = planning.calendar_verdict(self.cfg, contact, self.clock.now())
        return "" if verdict.allowed else verdict.reason

    def unsent(self, call_id: int, send: Coroutine[Any, Any, None]) -> None:
        """A claimed attempt whose Originate is not sent after all (a stop or a pause came
        during its claim or its pacing wait, or the calling window closed during that wait):
        nothing was dialled, so the attempt is withdrawn
        (its row removed: the contact keeps its attempts and is due again). No outcome, no
        webhook. Written in order with the run's other writes; a store away then leaves it to
        the next run's reconciliation (`error`), as any unwritten write."""
        send.close()  # the coroutine never ran: nothing reached the node
        self._withdraw(call_id)

    def _withdraw(self, call_id: int) -> None:
        if self._drop(call_id) is not None:
            self.writer.write(lambda: self.store.withdraw_attempt(call_id))
        self.changed.set()

    async def _originate(self, ns: NodeState, flight: InFlight,
                         request: OriginateRequest) -> None:
        # The link it leaves on (nothing is awaited before it is written): a reconciliation
        # leaves it to that link's events (reconcile.py).
        flight.link = ns.node.link
        try:
            await ns.node.originate(request)
        except OriginateRefused as exc:
            # The channel id too: a withdrawn attempt's id may be given again (SQLite)
            log.warning("Originate for call %s (%s) refused: %s", flight.call_id,
                        flight.channel_id, exc)
            if exc.shutting_down:  # the node is going away: its fault, retried after a hold
                ns.hold()
                self._settle_unanswered(flight, "error", None, refused=True)
            else:  # its AMI user or dialplan, nobody's answer: withdrawn (node_guard.py)
                node_guard.settle_refused(self, flight, self.node_guard.refused(
                    ns, str(exc), flight.number))
            raise
        except NotSent as exc:
            # The link was down before it left: nothing dialled, so no attempt is charged
            # (`error` would count against the cap): withdrawn, due again on another node.
            log.warning("Originate for call %s not sent: %s", flight.call_id, exc)
            self._withdraw(flight.call_id)
            raise
        except (NodeDisconnected, ActionTimeout) as exc:
            # It may have reached the PBX: never send it again. The reconciliation after the
            # reconnect adopts the live channel or settles the attempt.
            log.warning("Originate for call %s unconfirmed: %s", flight.call_id, exc)
            flight.unsure = True
            raise
        except Exception:  # unexpected (a bug, a closed transport): reconciled, never re-sent
            flight.unsure = True
            raise
        self.originated += 1
        self.node_guard.accepted(ns.name)

    def _request(self, channel: str, flight: InFlight, token: str) -> OriginateRequest:
        """The token goes only here (never logged): the dialplan hands it to the AGI."""
        variables = {contract.VAR_CALL_ID: str(flight.call_id),
                     contract.VAR_AGI_URL: self.agi_url,
                     contract.VAR_AMD: "1" if self.cfg.dialer.amd else "0",
                     contract.VAR_TOKEN: token,
                     contract.VAR_OPTOUT_DIGIT: self.cfg.flow.optout_key}
        sounds = self.sounds()
        if sounds.get("legal"):
            variables[contract.VAR_LEGAL] = sounds["legal"]
            if sounds.get("optout_confirm"):
                variables[contract.VAR_OPTOUT_CONFIRM] = sounds["optout_confirm"]
        return OriginateRequest(
            channel=channel, channel_id=flight.channel_id, caller_id=self.caller_id,
            timeout_ms=int(self.cfg.dialer.ring_timeout_s * 1000),
            context=contract.OUTBOUND_CONTEXT, exten=contract.OUTBOUND_EXTEN,
            variables=variables)

    # -- events -------------------------------------------------------------------------------
    async def consume(self, ns: NodeState) -> None:
        """Feed one node's events to the handlers, for as long as the node lives."""
        async for ev in ns.node.events():
            try:
                self.on_event(ev)
            except Exception:  # one bad event must not stop every later one
                log.exception("node event %r not handled", ev)

    def on_event(self, ev: NodeEvent) -> None:
        handler = node_events.HANDLERS.get(type(ev))  # ivr/campaign/node_events.py
        if isinstance(ev, OriginateResult) and ev.success:
            ns = self.nodes.get(ev.node)
            if ns is not None and ev.channel_id in ns.calls:  # ours: the trunk carried it
                self.carrier.answered(ev.node)  # now, not at the call's end minutes later
        if handler is not None:
            handler(self, ev)

    # -- settling -----------------------------------------------------------------------------
    async def read_call(self, call_id: int) -> dict[str, Any] | None:
        """The attempt as stored, batched writes included. Remote: once the writes made so far
        have landed, read in a worker thread (the loop never waits on the round trip)."""
        if self.remote:
            await self.writer.settled()
            return await self.off_loop(self.store.call, call_id)
        self.writer.flush()
        return self.store.call(call_id)

    # Ends the IVR does not settle: ivr/campaign/settle.py
    def _expire_later(self, flight: InFlight) -> None:
        settle.expire_later(self, flight)

    def _settle_error(self, flight: InFlight, stage: str) -> None:
        settle.flight_error(self, flight, stage)

    def settle_error(self, call_id: int, stage: str, answered: bool, attempt: int) -> None:
        settle.error(self, call_id, stage, answered, attempt)

    def _settle_unanswered(self, flight: InFlight, outcome: str, cause: int | None,
                           refused: bool = False) -> None:
        settle.unanswered(self, flight, outcome, cause, refused)

    def abandon(self, call_id: int) -> None:
        """Stop waiting for a call this run cannot settle safely (its Originate never confirmed
        by a node that went down: a hung Asterisk may still read it and place the call). Its
        attempt stays open in the store, so no one dials the number, until a reconciliation
        of that node (its return, or the next run) settles it. No outcome: no hook."""
        if self._drop(call_id) is not None:
            self.abandoned.add(call_id)
        self.changed.set()

    def announce(self, call_id: int) -> None:
        """A call settled outside the dialer's own paths (a reconciliation, the orphan sweep,
        an abandoned call at last): its outcome's hooks (webhooks)."""
        self.abandoned.discard(call_id)
        for hook in self.on_settled:
            hook(call_id)

    def finished(self, call_id: int) -> None:
        """The attempt has its outcome: it no longer counts against max_concurrent."""
        flight = self._drop(call_id)
        if flight is not None:
            self.carrier.ended(flight)
            self.node_guard.ended(flight)
            for hook in self.on_settled:
                hook(call_id)
        self.changed.set()

    def _drop(self, call_id: int) -> InFlight | None:
        """The attempt leaves the calls in flight, its node's and the claimed ones."""
        flight = self.by_call.pop(call_id, None)
        self.claimed.pop(call_id, None)
        if flight is not None:
            ns = self.nodes.get(flight.node)
            if ns is not None:
                ns.calls.pop(flight.channel_id, None)
            if flight.settle is not None:
                flight.settle.cancel()
        if not self.by_call:
            self.idle.set()
        return flight

    # -- reconciliation (ivr/campaign/reconcile.py) -------------------------------------------
    async def reconcile(self) -> int:
        """Reconcile every node (at start-up: attempts left open by an earlier run)."""
        return await reconcile.every_node(self)

    async def reconcile_node(self, ns: NodeState) -> int:
        return await reconcile.node(self, ns)

    def _reconcile_soon(self, ns: NodeState) -> None:
        reconcile.soon(self, ns, self._tasks)

    async def close(self) -> None:
        """Its background tasks end: the reconciliations (one retrying every RETRY_S against
        a node that is gone kept doing so, with a WARNING each time, as long as the loop
        lived), and a no-cause failure's check still running after a hard stop (its attempt
        is left to the next run's reconciliation, as any call open then)."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def adopt(self, ns: NodeState, call: dict[str, Any],
              answered_before: bool = False) -> InFlight:
        return reconcile.adopt(self, ns, call, answered_before=answered_before)

    async def hangup_all(self, timeout_s: float = settle.HANGUP_ALL_S) -> None:
        await settle.hangup_all(self, timeout_s)
