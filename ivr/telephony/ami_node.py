"""`AmiNode`: the PbxNode seam (ivr/telephony/node.py) over one Asterisk's AMI, through `Ami`.

Every AMI field name the dialer used to read lives here: it gets typed events
(OriginateResult, ChannelHangup, Failsafe, Reconnected, ChannelHold, OptoutsJournaled) and
typed errors, never a Message.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ivr.config import SINGLE_NODE
from ivr.errors import PbxError
from ivr.telephony.ami import HOLD_EVENTS, Ami
from ivr.telephony.contract import (EVENT_FAILSAFE, EVENT_JOURNALED, FAILSAFE_CALL_ID,
                                    FAILSAFE_CALLBACK, FAILSAFE_STATUS, JOURNAL_CALLS,
                                    JOURNAL_FAMILY)
from ivr.telephony.node import (LOCAL_OTHER, ChannelHangup, ChannelHold, ChannelListing,
                                Failsafe, JournaledOptout, NodeEvent, OptoutsJournaled,
                                OriginateRequest, OriginateResult, Reconnected)

log = logging.getLogger(__name__)
JOIN_EVERY_S = 2.0  # a node down at start is tried this often
STATE_UP = "6"  # CoreShowChannel's ChannelState of an answered channel (AST_STATE_UP)
GONE_PROBE_S = 1.0  # a TCP connect to the AMI port: refused at once when nothing listens
OPPOSITION_ALARM_EVERY_S = 600.0  # the opposition line's failsafe: an ERROR this often at most


def secret_env(node: str) -> str:
    """The environment variable of a node's AMI secret: IVR_AMI_SECRET_<NAME>, the name
    upper-cased, - as _ (a shell variable name)."""
    return "IVR_AMI_SECRET_" + node.upper().replace("-", "_")


def checked_secret(value: str, var: str) -> str:
    """An AMI secret from the environment: one line of printable characters. A line break
    would add header lines to the Login action (and lines to the sandbox's manager.conf)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise PbxError(f"{var} holds a line break or a control character: an AMI secret is one "
                       "line of printable characters; export it again")
    return value


def env_secret(node: str) -> str | None:
    """The node's AMI secret from the environment (IVR_AMI_SECRET_<NAME>, else
    IVR_AMI_SECRET), checked; None when neither is set."""
    var = secret_env(node) if os.environ.get(secret_env(node)) else "IVR_AMI_SECRET"
    value = os.environ.get(var)
    return checked_secret(value, var) if value else None


def login_hint(node: str) -> str:
    """What to check when `node` refuses our login: its user key and the variable its secret
    was read from (IVR_AMI_SECRET_<NAME> when set, else IVR_AMI_SECRET)."""
    user = "pbx.user" if node == SINGLE_NODE else f"pbx.nodes[{node}].user"
    own = secret_env(node)
    if os.environ.get(own):
        secret = own
    elif os.environ.get("IVR_AMI_SECRET"):
        secret = f"IVR_AMI_SECRET ({own} is not set)"
    else:
        secret = f"{own} (or IVR_AMI_SECRET)"
    return f"check {user} and {secret}"


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _epoch(value: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def parse_event(node: str, ev: Mapping[str, Any]) -> NodeEvent | None:
    """One AMI event as a typed node event; None for events the dialer does not need."""
    name = ev.get("Event")
    if name == "OriginateResponse":
        return OriginateResult(node, str(ev.get("Uniqueid", "")),
                               success=ev.get("Response") == "Success",
                               reason=_int(ev.get("Reason")))
    if name == "Hangup":
        uid = str(ev.get("Uniqueid", ""))
        callee_half = uid.endswith(LOCAL_OTHER)
        channel_id = uid[:-len(LOCAL_OTHER)] if callee_half else uid
        return ChannelHangup(node, channel_id, _int(ev.get("Cause")), callee_half=callee_half)
    if name == "UserEvent" and ev.get("UserEvent") == EVENT_FAILSAFE:
        return Failsafe(node, _int(ev.get(FAILSAFE_CALL_ID)), str(ev.get(FAILSAFE_STATUS, "")),
                        str(ev.get("Uniqueid") or ""))  # the channel that raised it
    if name == "UserEvent" and ev.get("UserEvent") == EVENT_JOURNALED:
        return OptoutsJournaled(node)
    if name in HOLD_EVENTS:  # Linkedid: the Originate's ChannelId, behind a Local channel too
        uid = str(ev.get("Linkedid") or ev.get("Uniqueid") or "")
        return ChannelHold(node, uid, held=name == "Hold")
    if name == "Reconnected":  # Ami's pseudo-event: the link came back, events were missed
        return Reconnected(node)
    return None


def is_opposition_failsafe(ev: Mapping[str, Any]) -> bool:
    """[ivr-callback]'s failsafe (dialplans/ivr-callback.conf): an inbound opposition the
    controller never got. No attempt's event: the dialer is not told, the admin is."""
    return ev.get("Event") == "UserEvent" and ev.get("UserEvent") == EVENT_FAILSAFE and \
        ev.get(FAILSAFE_CALL_ID) == FAILSAFE_CALLBACK


class OppositionAlarm:
    """Each caller the opposition line failed heard the legal mentions, and their opposition
    was recorded nowhere: an ERROR saying what to check, at most once per `every_s`, with the
    count of the failures since the last one."""

    def __init__(self, node: str, every_s: float = OPPOSITION_ALARM_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node, self.every_s, self._clock = node, every_s, clock
        self._next = -float("inf")
        self._unreported, self._status = 0, ""

    def seen(self, status: str) -> None:
        self._unreported, self._status = self._unreported + 1, status
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.every_s
        self._tell("told again in %g min at most" % (self.every_s / 60))

    def flush(self) -> None:
        """The failures counted since the last ERROR, said once more at the node's close: a
        quiet spell never hides them (before: only a later failure said them)."""
        if self._unreported:
            self._tell("counted since the last such line; the run is ending")

    def _tell(self, tail: str) -> None:
        count, status, self._unreported = self._unreported, self._status, 0
        log.error("node %s: the opposition line failed %d caller(s) (%s): %s. The dialplan "
                  "asked each for the key itself: one who pressed it was journaled on the PBX "
                  "and is put on the opposition list from there, the others heard the legal "
                  "mentions (%s)",
                  self.node, count, f"AGISTATUS {status}" if status else "no AGI run",
                  opposition_hint(status), tail)


def opposition_hint(status: str) -> str:
    """What the admin checks, from the failsafe's AGISTATUS."""
    if status == "SUCCESS":  # the controller took the session and closed it unserved
        return ("the controller closed the opposition line's session unserved: its log says "
                "why (agi.allowed_peers, IVR_CALLBACK_SECRET)")
    if not status:  # [ivr-callback] found IVR_AGI_URL or IVR_CALLBACK_SECRET unset
        return ("[globals] IVR_AGI_URL or IVR_CALLBACK_SECRET is not set "
                "(dialplans/ivr-callback.conf)")
    return ("the opposition line could not reach the controller's FastAGI: check [globals] "
            "IVR_AGI_URL (agi.host:agi.port) and that `ivr serve`/`ivr run` is listening")


class AmiNode:
    """One Asterisk reached over AMI. `max_channels` 0: no limit of its own."""

    def __init__(self, name: str, host: str, port: int, user: str, secret: str,
                 max_channels: int = 0, **ami_options: Any) -> None:
        self.name = name
        self.max_channels = max_channels
        self._args = (host, port, user, secret)
        self._options = {"name": name, "login_hint": login_hint(name), **ami_options}
        self._ami: Ami | None = None
        self._joined: asyncio.Event | None = None  # set: a node down at start has joined
        self._join_task: asyncio.Task | None = None
        self._closed = False
        self.opposition = OppositionAlarm(name)

    @property
    def ami(self) -> Ami:
        """The underlying Ami, built on first use (it needs a running loop)."""
        if self._ami is None:
            self._ami = Ami(*self._args, **self._options)
        return self._ami

    @property
    def refusing(self) -> bool:
        """It answers AMI but refuses our login: alive, not hung (deadline.settle_unseen)."""
        return self._ami is not None and self._ami.refusing

    @property
    def up(self) -> bool:
        return self._ami is not None and self._ami.connected

    @property
    def link(self) -> int:
        # Ami counts its re-logins; an Ami replaced in _join never logged in: it counted none.
        return self._ami.reconnects if self._ami is not None else 0

    async def connect(self, timeout: float = 10.0) -> None:
        await self.ami.connect(timeout)

    async def wait_up(self, timeout: float) -> bool:
        return await self.ami.wait_connected(timeout)

    def join_later(self, every_s: float = JOIN_EVERY_S) -> None:
        """A node down when the run starts: connect in the background until it answers; its
        events then begin with Reconnected (the dialer reconciles it, then places calls)."""
        self._joined = asyncio.Event()
        self._join_task = asyncio.get_running_loop().create_task(self._join(every_s))

    async def _join(self, every_s: float) -> None:
        told = ""  # the last failure logged: each new one once, not every try
        while not self._closed:
            if not await self.gone():
                ami = self.ami
                try:
                    await ami.connect(every_s)
                    break
                except PbxError as exc:  # refused again, still booting: a fresh link next time
                    ami.close()  # connect() closed it; the Ami dropped here leaves no link
                    self._ami = None
                    if str(exc) != told:
                        told = str(exc)
                        log.error("%s (tried again every %g s)", exc, every_s)
            await asyncio.sleep(every_s)
        if told and not self._closed:
            log.warning("node %s joined", self.name)
        if self._joined is not None:
            self._joined.set()

    async def gone(self) -> bool:
        """Is the node's Asterisk gone, not just our link to it? Nothing listens on its AMI
        port (connection refused): the process died, and every channel with it. A timeout or
        a listener says nothing of the kind: False."""
        host, port = self._args[:2]
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                               GONE_PROBE_S)
        except ConnectionRefusedError:
            return True
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return False

    async def originate(self, request: OriginateRequest) -> None:
        await self.ami.originate(
            channel=request.channel, context=request.context, exten=request.exten,
            channel_id=request.channel_id, other_channel_id=request.other_channel_id,
            variables=dict(request.variables), timeout_ms=request.timeout_ms,
            caller_id=request.caller_id)

    async def hangup(self, channel_id: str, cause: int = 16) -> None:
        await self.ami.hangup(channel_id, cause)

    async def channels(self) -> set[str]:
        return set((await self.listing()).live)

    async def listing(self) -> ChannelListing:
        shown = [ch for ch in await self.ami.channels() if ch.get("Uniqueid")]
        return ChannelListing(frozenset(str(ch.get("Uniqueid")) for ch in shown),
                              frozenset(str(ch.get("Uniqueid")) for ch in shown
                                        if str(ch.get("ChannelState") or "") == STATE_UP))

    async def journaled_optouts(self) -> list[JournaledOptout]:
        calls = JOURNAL_CALLS.removeprefix(JOURNAL_FAMILY + "/") + "/"  # the sub-family's keys
        return [JournaledOptout("", _epoch(at), key.removeprefix(calls))
                if key.startswith(calls) else JournaledOptout(key, _epoch(at))
                for key, at in await self.ami.db_tree(JOURNAL_FAMILY)]

    async def events(self) -> AsyncIterator[NodeEvent]:
        if self._joined is not None:  # down at start: nothing to read before it joins
            await self._joined.wait()
            if self._closed:
                return
            yield Reconnected(self.name)
        async for ev in self.ami.events():
            if is_opposition_failsafe(ev):
                self.opposition.seen(str(ev.get(FAILSAFE_STATUS) or ""))
                continue
            typed = parse_event(self.name, ev)
            if typed is not None:
                yield typed

    def close(self) -> None:
        if not self._closed:
            self.opposition.flush()
        self._closed = True
        if self._join_task is not None:
            self._join_task.cancel()
        if self._joined is not None:
            self._joined.set()  # the event reader ends
        if self._ami is not None:
            self._ami.close()

    def __repr__(self) -> str:
        host, port = self._args[:2]
        return f"AmiNode({self.name!r}, {host}:{port}, up={self.up})"
