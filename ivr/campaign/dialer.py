"""Originates calls over AMI and settles every attempt that the IVR handler does not.

Correlation: each attempt's calls.id is passed as CALL_ID (channel variable and AGI argument) and
its channel_id is the Originate ChannelId, i.e. the Uniqueid of the IVR-side channel. Never
panoramisk's CallManager, which groups calls by epoch second.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ivr.telephony.ami import Ami, AmiDisconnected
from ivr.config import Config
from ivr.callflow.dispositions import RETRYABLE, as_int, unanswered_outcome
from ivr.errors import ConfigError, PbxError
from ivr.store.safe_writes import SafeWriter
from ivr.store.sqlite import CallResult, Store

log = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
UNSAFE = re.compile(r"[&,|/\\\r\n;'\"\s]")
CAUSE_GRACE_S = 1.0     # wait this long for a Hangup cause after a vague OriginateResponse
ANSWERED_GRACE_S = 3.0  # an answered call whose IVR never reported is an `error` after this
LOCAL_OTHER = "-2"      # OtherChannelId suffix: the ;2 half of a Local channel


def dial_string(template: str, number: str) -> str:
    """Fill the dial string, refusing anything that could inject into it."""
    if not E164.match(number):
        raise ConfigError(f"number {number!r} is not E.164 (+ and 6-15 digits): fix the contact")
    if "\n" in template or "\r" in template or "&" in template or "|" in template:
        raise ConfigError("dialer.dial_string must be one channel (no &, | or newline)")
    return template.replace("{number}", number)


def safe_value(name: str, value: str) -> str:
    if UNSAFE.search(value.replace(" ", "")) and name != "caller_name":
        raise ConfigError(f"{name} {value!r} contains characters not allowed in AMI fields")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be one line")
    return value


@dataclass
class InFlight:
    call_id: int
    channel_id: str
    number: str
    answered: bool = False
    hung_up: bool = False
    cause: int | None = None
    reason: int | None = None  # OriginateResponse Reason of a failed Originate
    unsure: bool = False       # Originate sent, reply lost: only reconciliation may settle it
    settle: asyncio.TimerHandle | None = field(default=None, repr=False)


class Dialer:
    def __init__(self, cfg: Config, store: Store, ami: Ami, clock: Callable[[], datetime],
                 agi_url: str) -> None:
        self.cfg = cfg
        self.store = store
        self.ami = ami
        self.clock = clock
        self.agi_url = agi_url
        self.inflight: dict[str, InFlight] = {}
        self.by_call: dict[int, str] = {}
        self.changed = asyncio.Event()        # an attempt settled: capacity freed
        self.retry_planned = asyncio.Event()  # an attempt settled with a retry time
        self.idle = asyncio.Event()           # nothing in flight any more
        self.originated = 0
        self.writer = SafeWriter(store.transaction)
        self.hold_until = 0.0  # monotonic time before which no call is placed (PBX trouble)
        self.reconciling = False
        self._reconcile_task: asyncio.Task | None = None
        self.ivr_active: set[int] = set()  # attempts whose IVR handler is still running
        caller = cfg.campaign.caller_id
        safe_value("campaign.caller_id", caller)
        safe_value("campaign.caller_name", cfg.campaign.caller_name)
        self.caller_id = (f'"{cfg.campaign.caller_name}" <{caller}>'
                          if cfg.campaign.caller_name else caller)

    # -- policy -------------------------------------------------------------------------------
    def retry_at(self, call: dict[str, Any], outcome: str) -> datetime | None:
        if outcome not in RETRYABLE or int(call["attempt"]) >= self.cfg.retry.max_attempts:
            return None
        delays = self.cfg.retry.delay_s
        delay = getattr(delays, outcome, delays.congestion)
        self.retry_planned.set()
        return self.clock() + timedelta(seconds=delay)

    def pbx_fault(self, hold_s: float = 5.0) -> None:
        """The PBX tore a call down (shutdown, restart): place no call for a while, so
        retries do not land on a PBX that is going away."""
        self.hold_until = max(self.hold_until, time.monotonic() + hold_s)

    def holding(self) -> bool:
        return self.reconciling or time.monotonic() < self.hold_until

    async def pbx_went_down(self, within_s: float = 2.0) -> bool:
        """Did the PBX shut down or drop AMI around now? (Shutdown event, lost link.)"""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if not self.ami.connected:
                return True
            await asyncio.sleep(0.1)
        return False

    # -- originate ----------------------------------------------------------------------------
    async def dial(self, contact: dict[str, Any]) -> dict[str, Any]:
        channel = dial_string(self.cfg.dialer.dial_string, contact["number"])
        call = self.store.create_attempt(contact, self.cfg.campaign.name,
                                         self.cfg.campaign.caller_id, self.clock())
        flight = InFlight(int(call["id"]), call["channel_id"], contact["number"])
        self.inflight[flight.channel_id] = flight
        self.by_call[flight.call_id] = flight.channel_id
        try:
            await self.ami.originate(
                channel=channel, context="ivr-outbound", exten="s",
                channel_id=flight.channel_id,
                other_channel_id=flight.channel_id + LOCAL_OTHER, caller_id=self.caller_id,
                timeout_ms=int(self.cfg.dialer.ring_timeout_s * 1000),
                variables={"CALL_ID": str(flight.call_id), "IVR_AGI": self.agi_url,
                           "IVR_AMD": "1" if self.cfg.dialer.amd else "0"})
        except (AmiDisconnected, PbxError) as exc:
            if isinstance(exc, AmiDisconnected) or "refused" not in str(exc):
                # It may have reached Asterisk: never send it again. The reconciliation after
                # the reconnect adopts the live channel or settles the attempt.
                log.warning("Originate for call %s unconfirmed: %s", flight.call_id, exc)
                flight.unsure = True
                raise
            log.warning("Originate for call %s refused: %s", flight.call_id, exc)
            # Refused by a PBX that is going away is its fault (retried); otherwise `failed`.
            shutting_down = "shutting down" in str(exc)
            if shutting_down:
                self.pbx_fault()
            self._settle_unanswered(flight, "error" if shutting_down else "failed", None)
            raise
        self.originated += 1
        return call

    # -- events -------------------------------------------------------------------------------
    def on_event(self, ev: Any) -> None:
        name = ev.get("Event")
        if name == "OriginateResponse":
            flight = self.inflight.get(ev.get("Uniqueid", ""))
            if flight is None:
                return
            if ev.get("Response") == "Success":
                flight.answered = True  # answered_at is written by the IVR when it starts
                if flight.hung_up:  # the Hangup came first: still give the IVR its grace
                    asyncio.get_running_loop().call_later(ANSWERED_GRACE_S, self._expire,
                                                          flight)
                return
            flight.reason = as_int(ev.get("Reason"))
            if flight.hung_up and flight.cause is not None:
                self._settle_failed(flight)
            else:  # the Hangup events carry the cause that explains the failure
                flight.settle = asyncio.get_running_loop().call_later(
                    CAUSE_GRACE_S, self._settle_failed, flight)
        elif name == "Hangup":
            uid = ev.get("Uniqueid", "")
            if uid.endswith(LOCAL_OTHER):  # the callee half of a Local channel: its cause is
                other = self.inflight.get(uid[:-len(LOCAL_OTHER)])  # the one that explains
                if other is not None and as_int(ev.get("Cause")):
                    other.cause = as_int(ev.get("Cause"))
                    if other.reason is not None and other.hung_up:
                        self._settle_failed(other)
                return
            flight = self.inflight.get(uid)
            if flight is None:  # already settled by the IVR: keep the real cause
                cause = str(ev.get("Cause"))
                if uid.startswith("ivr-") and as_int(cause):
                    self.writer.write(lambda: self.store.set_hangup_cause_by_channel(uid, cause))
                return
            flight.cause = flight.cause or as_int(ev.get("Cause")) or None
            flight.hung_up = True
            if flight.reason is not None and flight.cause is not None:
                self._settle_failed(flight)
                return
            if flight.answered:
                if flight.cause is not None:
                    cause = str(flight.cause)
                    self.writer.write(lambda: self.store.set_hangup_cause(flight.call_id,
                                                                          cause))
                asyncio.get_running_loop().call_later(ANSWERED_GRACE_S, self._expire, flight)
        elif name == "UserEvent" and ev.get("UserEvent") == "IvrFailsafe":
            call_id = as_int(ev.get("CallId"))
            channel_id = self.by_call.get(call_id or -1)
            if channel_id and channel_id in self.inflight:
                self._settle_error(self.inflight[channel_id], "failsafe")
        elif name == "Reconnected":  # events were missed while AMI was down
            self._reconcile_soon()

    def read_call(self, call_id: int) -> dict[str, Any] | None:
        """The attempt as stored, batched writes included."""
        self.writer.flush()
        return self.store.call(call_id)

    def _settle_failed(self, flight: InFlight) -> None:
        self._settle_unanswered(flight, unanswered_outcome(flight.reason, flight.cause),
                                flight.cause)

    def _expire(self, flight: InFlight) -> None:
        """An answered call hung up but no outcome arrived from the IVR: record `error`."""
        if flight.call_id in self.ivr_active:  # still deciding (e.g. waiting on AMI): later
            asyncio.get_running_loop().call_later(ANSWERED_GRACE_S, self._expire, flight)
            return
        if flight.channel_id in self.inflight:
            call = self.read_call(flight.call_id)
            if call is not None and call["outcome"] is None:
                self._settle_error(flight, "no-ivr-report")
            else:
                self.finished(flight.call_id)

    def _settle_error(self, flight: InFlight, stage: str) -> None:
        self.settle_error(flight.call_id, stage, answered=flight.answered)
        self.finished(flight.call_id)

    def settle_error(self, call_id: int, stage: str, answered: bool) -> None:
        """`error`: a fault of the controller or the PBX. A safe retry while attempts remain;
        the store writes nothing if the attempt already has its outcome."""
        call = self.read_call(call_id)
        if call is None:
            return
        now, retry = self.clock(), self.retry_at(call, "error")
        if not answered:  # never answered: no answered_at, no invented cause
            self.writer.write(lambda: self.store.finish_unanswered(
                call_id, "error", None, now, retry, stage=stage))
            return
        result = CallResult(outcome="error", stage=stage, keys=call["keys"] or "", heard={})
        self.writer.write(lambda: self.store.finish_answered(call_id, result, now, retry))

    def _settle_unanswered(self, flight: InFlight, outcome: str, cause: int | None) -> None:
        if flight.channel_id not in self.inflight:
            return
        call = self.read_call(flight.call_id)
        if call is not None:
            now, retry = self.clock(), self.retry_at(call, outcome)
            text = str(cause) if cause is not None else None
            self.writer.write(lambda: self.store.finish_unanswered(
                flight.call_id, outcome, text, now, retry))
        self.finished(flight.call_id)

    async def reconcile(self) -> int:
        """After a restart or a reconnect: adopt live channels, settle attempts that are gone.

        Nothing is originated here. An attempt whose channel is gone and that has no outcome
        is `error` with a safe retry (its IVR, if any, gets a grace period first)."""
        self.reconciling = True  # the campaign places no call meanwhile
        try:
            # Only attempts that existed before asking Asterisk: a newer one may be missing
            # from the answer and must not be taken for gone.
            self.writer.flush()
            open_calls = self.store.open_calls()
            live = {ch.get("Uniqueid") for ch in await self.ami.channels()}
            return self._reconcile(open_calls, live)
        finally:
            self.reconciling = False

    def _reconcile(self, open_calls: list[dict[str, Any]], live: set[str]) -> int:
        settled = 0
        for call in open_calls:
            channel_id, call_id = call["channel_id"], int(call["id"])
            flight = self.inflight.get(channel_id)
            if channel_id in live:
                if flight is None:
                    flight = InFlight(call_id, channel_id, call["number"],
                                      answered=call["answered_at"] is not None)
                    self.inflight[channel_id] = flight
                    self.by_call[call_id] = channel_id
                flight.unsure = False
                continue
            if flight is not None and flight.answered and not flight.unsure:
                asyncio.get_running_loop().call_later(ANSWERED_GRACE_S, self._expire, flight)
                continue
            self.settle_error(call_id, "reconciled",
                              answered=call["answered_at"] is not None or
                              (flight is not None and flight.answered))
            if flight is not None:
                self.finished(call_id)
            settled += 1
        for channel_id, flight in list(self.inflight.items()):  # settled meanwhile
            row = self.read_call(flight.call_id)
            if channel_id not in live and row is not None and row["outcome"]:
                self.finished(flight.call_id)
        return settled

    def _reconcile_soon(self) -> None:
        """After a reconnect; a failure is logged and tried again, never lost in a task."""
        async def attempt() -> None:
            try:
                await self.reconcile()
            except Exception as exc:  # AMI dropped again, PBX still booting: retry shortly
                log.warning("reconciliation failed (%s): retrying", exc)
                asyncio.get_running_loop().call_later(2.0, self._reconcile_soon)
        self._reconcile_task = asyncio.get_running_loop().create_task(attempt())

    def finished(self, call_id: int) -> None:
        """The attempt has its outcome: it no longer counts against max_concurrent."""
        channel_id = self.by_call.pop(call_id, None)
        if channel_id is not None:
            flight = self.inflight.pop(channel_id, None)
            if flight is not None and flight.settle is not None:
                flight.settle.cancel()
        self.changed.set()
        if not self.inflight:
            self.idle.set()

    async def hangup_all(self) -> None:
        for channel_id in list(self.inflight):
            try:
                await self.ami.hangup(channel_id)
            except Exception as exc:  # the channel may already be gone
                log.info("hangup %s: %s", channel_id, exc)
