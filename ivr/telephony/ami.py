"""The one place that speaks AMI: a thin async wrapper around panoramisk's Manager.

panoramisk 1.4 defects handled here (subclass, not a copy):
- after a reconnect it re-sends actions that got no reply: an Originate could be sent twice.
  Here nothing is ever re-sent; a pending action fails with AmiDisconnected instead.
- an action whose first Response already arrived hangs forever if the connection drops:
  every pending future is failed on disconnect, and every action has a timeout.
- its Ping never checks for the Pong: our heartbeat awaits the Pong and, when it is late,
  aborts the transport so the connection is re-established.
- an Async Originate is treated as a multi-response action, which keeps the future open until
  the OriginateResponse (up to the ring timeout). We resolve on the first Response and let the
  OriginateResponse arrive as an ordinary event.
- its close() does not cancel a reconnect already scheduled by a lost connection (e.g. the one
  Asterisk closes after a refused login): a closed Manager here never connects again.
- its close() leaves a TCP connect (or reconnect) still pending to finish later and log in,
  events on, into an Ami nobody reads: here close() cancels it, and a link made after close()
  is closed at once without a Login.
- it truncates reconnect_timeout to whole seconds: 0.2 s became 0, a reconnect loop without
  pause while the PBX is down. The delay is kept as given.

Errors are typed (ivr/telephony/node.py), so callers never match error text: AmiDisconnected
(a NodeDisconnected) when the link is down or drops before the reply, ActionTimeout when no
reply comes in time, OriginateRefused when Asterisk answers an Originate with an Error.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from ivr.errors import PbxError
from ivr.telephony.node import (ActionRefused, ActionTimeout, NodeDisconnected, NotSent,
                               OriginateRefused)

log = logging.getLogger(__name__)

# Events the controller reads; everything else is dropped before it is queued.
# Asterisk 22 raises Hold / Unhold (class call) when a callee's re-INVITE puts the line on hold
# (a=sendonly or inactive) and takes it off (sendrecv), Linkedid the Originate's ChannelId. Only
# a held call sends them: no cost on the others.
HOLD_EVENTS = frozenset({"Hold", "Unhold"})
WANTED_EVENTS = frozenset({"OriginateResponse", "Hangup", "UserEvent", "FullyBooted",
                           "Shutdown", "CoreShowChannel", "CoreShowChannelsComplete"}) | HOLD_EVENTS


# What manager.c answers every action while Asterisk stops gracefully ("core stop gracefully").
SHUTTING_DOWN = "shutting down"


_CLOSED = Message({"Event": "Closed"})  # queued by close(): the end of events()
DEFAULT_LOGIN_HINT = "check pbx.user and the IVR_AMI_SECRET environment variable"


# panoramisk 1.4 lines that print a whole AMI message or action: "message interpreted: %r"
# (every reply and event, e.g. a CoreShowChannel's ApplicationData with an AGI token or the
# opposition line's callback secret, and the callee's number in Channel), "Fail to send %r"
# (the action, pre-formatted: a Login's Secret, an Originate's IVR_TOKEN), "Adding action ...
# to awaiting list: %s". They never reach our log: the logs promise no tokens, secrets, numbers.
_WHOLE_MESSAGE_LINES = ("message interpreted", "Fail to send", "Adding action")


def _whole_message_line(msg: object, args: tuple[Any, ...]) -> str | None:
    """The first words of a line that would print an AMI message, None for any other line.
    Any line with a message argument counts (a panoramisk upgrade adding one stays quiet)."""
    text = str(msg)
    known = next((p for p in _WHOLE_MESSAGE_LINES if text.startswith(p)), None)
    if known is None and any(isinstance(arg, Mapping) for arg in args):
        known = text.split("%", 1)[0].rstrip(" :\"'")[:40]
    return known


class _PanoramiskLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """panoramisk's log lines, naming the node; while the link is down and that was logged
    once, its "Connection lost" / "Try to connect again" each second go to debug. A line that
    would print a whole AMI message is dropped at debug; above, only its first words remain."""

    def __init__(self, owner: "Ami") -> None:
        super().__init__(logging.getLogger("ivr.telephony.ami.panoramisk"), {})
        self._owner = owner

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        owner = self._owner
        words = _whole_message_line(msg, args)
        if words is not None:
            if level <= logging.DEBUG:
                return
            msg, args = f"{words} (AMI message not shown: it can carry secrets)", ()
        if owner._retrying and level > logging.DEBUG:
            level = logging.DEBUG
        super().log(level, f"{owner.label}{msg}", *args, **kwargs)


class AmiDisconnected(NodeDisconnected):
    """The AMI link is down or dropped before the reply (the name older callers import)."""


class AmiNotConnected(AmiDisconnected, NotSent):
    """The AMI link was down before the action was written: nothing reached the node."""


class _NeverResend:
    """Stands in for panoramisk's forgetable_actions: every action is forgettable."""

    def __contains__(self, _: object) -> bool:
        return True


class _Manager(Manager):  # type: ignore[misc]
    def __init__(self, owner: "Ami", **config: Any) -> None:
        super().__init__(**config)
        self.reconnect_timeout = float(config["reconnect_timeout"])  # not int()-truncated
        self.forgetable_actions = _NeverResend()
        self._owner = owner
        self._closed = False
        self._connecting: asyncio.Task | None = None  # the last TCP connect started

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self._closed:  # a reconnect scheduled before close(): not any more
            return None
        self._connecting = super().connect(*args, **kwargs)
        return self._connecting

    def connection_made(self, f: asyncio.Future) -> None:  # type: ignore[override]
        """A TCP connect finished. After close() (a connect that outlived its timeout, or a
        reconnect): close the new link at once, no Login, no retry."""
        if self._closed or f.cancelled():
            if not f.cancelled() and f.exception() is None:
                f.result()[1].close()  # the protocol's close: it has no factory to call back
            return
        super().connection_made(f)

    def login(self, future: asyncio.Future) -> bool:  # type: ignore[override]
        ok = super().login(future)
        self._owner._on_login(ok)
        return ok

    def connection_lost(self, exc: Any) -> None:
        self._owner._on_lost()
        super().connection_lost(exc)
        self._owner._retrying = True  # its lines for this outage are logged: the rest, debug

    def close(self) -> None:
        self._closed = True  # a deliberate close must not reconnect
        if self._connecting is not None:
            # A TCP connect still pending (SYNs dropped by a full accept queue) would log in
            # when a retried SYN gets through; cancelled, its socket is closed now.
            self._connecting.cancel()
        super().close()

    def dispatch(self, event: Message) -> list[str]:  # type: ignore[override]
        self._owner._on_event(event)
        return []


class Ami:
    """Connects, logs in, sends actions with timeouts, yields events, detects dead links."""

    def __init__(self, host: str, port: int, user: str, secret: str, *,
                 events: Iterable[str] = WANTED_EVENTS, action_timeout: float = 10.0,
                 heartbeat_s: float = 5.0, reconnect_s: float = 1.0, name: str = "",
                 login_hint: str = DEFAULT_LOGIN_HINT) -> None:
        self.host, self.port = host, port
        self.label = f"node {name}: " if name else ""  # which node a message is about
        self.login_hint = login_hint  # what to check when the login is refused
        self._refused_told = False  # the refusal was logged (once per state change)
        self.wanted = frozenset(events)
        self.action_timeout = action_timeout
        self.heartbeat_s = heartbeat_s
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._pending: set[asyncio.Future] = set()
        self._logged_in = asyncio.Event()
        self._login_failed = False
        self._retrying = False  # the link is down and the outage was logged already
        self._closing = False
        self.reconnects = 0
        self.connected_once = False
        self._heartbeat: asyncio.Task | None = None
        # ping_delay is pushed out of reach: panoramisk's own pinger never checks the Pong.
        self._mgr = _Manager(self, host=host, port=port, username=user, secret=secret,
                             events="on", ping_delay=10**9, ping_interval=10**9,
                             reconnect_timeout=reconnect_s, loop=asyncio.get_running_loop(),
                             log=_PanoramiskLog(self))

    # -- panoramisk hooks ---------------------------------------------------------------------
    def _on_login(self, ok: bool) -> None:
        if ok:
            self._login_failed = False  # a refused login earlier must not block us for good
            self._retrying = False
            if self._refused_told:
                self._refused_told = False
                log.warning("%sAMI login accepted again at %s:%s", self.label, self.host,
                            self.port)
            if self.connected_once:  # events were missed while the link was down
                self.reconnects += 1
                self._events.put_nowait(Message({"Event": "Reconnected"}))
            self.connected_once = True
            self._logged_in.set()
        else:
            self._login_failed = True
            self._retrying = True  # Asterisk closes the link: no "Connection lost" each time
            if not self.connected_once:  # connect() raises: Asterisk's close must not reconnect
                self._mgr._closed = True
            elif not self._refused_told:  # a restart changed the secret: say it, once
                self._refused_told = True
                log.error("%s", self.refused_message())
            self._logged_in.set()

    @property
    def refusing(self) -> bool:
        """Asterisk answers but refuses our login (a restart changed its secret): its manager
        reads what it is sent, so no Originate of ours waits unread in it."""
        return self._refused_told

    def refused_message(self) -> str:
        return f"{self.label}AMI login refused at {self.host}:{self.port}: {self.login_hint}"

    def _on_lost(self) -> None:
        self._logged_in.clear()
        for fut in list(self._pending):
            if not fut.done():
                fut.set_exception(AmiDisconnected("AMI connection lost before the reply"))
        self._pending.clear()

    def _on_event(self, event: Message) -> None:
        if self._closing:  # nobody reads the queue after _CLOSED: never grow it
            return
        name = event.get("Event", "")
        if name == "Shutdown":  # Asterisk refuses new calls from now on: act as disconnected
            self._logged_in.clear()
        if name in self.wanted:
            self._events.put_nowait(event)

    # -- public API ---------------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:
        self._mgr.connect()
        try:
            await asyncio.wait_for(self._logged_in.wait(), timeout)
        except asyncio.TimeoutError:
            self.close()
            raise PbxError(f"{self.label}cannot reach AMI at {self.host}:{self.port} within "
                           f"{timeout:.0f} s: is the PBX up (`ivr pbx up`)?") from None
        if self._login_failed:
            self.close()
            raise PbxError(self.refused_message())
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._logged_in.wait(), timeout)
            return not self._login_failed
        except asyncio.TimeoutError:
            return False

    @property
    def connected(self) -> bool:
        return self._logged_in.is_set() and not self._login_failed

    async def action(self, fields: dict[str, Any], *, as_list: bool | None = False,
                     timeout: float | None = None) -> Any:
        if not self.connected:
            raise AmiNotConnected("AMI is not connected: nothing was sent")
        fut = self._mgr.send_action(dict(fields), as_list=as_list)
        self._pending.add(fut)
        try:
            async with asyncio.timeout(timeout or self.action_timeout):
                # shielded: a timeout must not cancel panoramisk's future, which stays in its
                # table of pending actions; the late Response completes and removes it, and an
                # event with its ActionID (OriginateResponse) then reaches us, not a dead entry
                return await asyncio.shield(fut)
        except asyncio.TimeoutError:
            raise ActionTimeout(f"AMI action {fields.get('Action')} got no reply in time") from None
        finally:
            self._pending.discard(fut)

    async def originate(self, *, channel: str, context: str, exten: str, channel_id: str,
                        other_channel_id: str,
                        variables: dict[str, str], timeout_ms: int, caller_id: str) -> None:
        """Queue an Originate (Async). The result arrives as an OriginateResponse event.
        Raises OriginateRefused (shutting_down when Asterisk is stopping), AmiDisconnected or
        ActionTimeout."""
        resp = await self.action({
            "Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
            "Priority": "1", "Async": "true", "ChannelId": channel_id,
            "OtherChannelId": other_channel_id, "Timeout": str(timeout_ms),
            "CallerID": caller_id, "Variable": [f"{k}={v}" for k, v in variables.items()],
        }, as_list=False)
        if resp.get("Response") != "Success":
            message = str(resp.get("Message") or "no message")
            raise OriginateRefused(f"Originate refused: {message}",
                                   shutting_down=SHUTTING_DOWN in message.lower())

    async def hangup(self, channel: str, cause: int = 16) -> None:
        await self.action({"Action": "Hangup", "Channel": channel, "Cause": str(cause)})

    async def channels(self) -> list[Message]:
        """Current channels (CoreShowChannels), for reconciling calls in flight."""
        resp = await self.action({"Action": "CoreShowChannels"}, as_list=True, timeout=30)
        items = resp if isinstance(resp, list) else [resp]
        return [m for m in items if m.get("Event") == "CoreShowChannel"]

    async def db_tree(self, family: str) -> list[tuple[str, str]]:
        """(key, value) of an AstDB family (DBGetTree: `system` or `reporting` write class),
        keys without the family's prefix. ActionRefused when Asterisk answers with an Error."""
        # as_list None: panoramisk tells a list ("EventList: start") from a lone Error, which
        # as_list=True would wait on for ever.
        resp = await self.action({"Action": "DBGetTree", "Family": family}, as_list=None)
        items = resp if isinstance(resp, list) else [resp]
        if items and items[0].get("Response") == "Error":
            raise ActionRefused(f"AMI DBGetTree refused: {items[0].get('Message', '')}")
        prefix = f"/{family}/"
        return [(str(m.get("Key", ""))[len(prefix):], str(m.get("Val", ""))) for m in items
                if m.get("Event") == "DBGetTreeResponse"
                and str(m.get("Key", "")).startswith(prefix)]

    async def ping(self, timeout: float = 3.0) -> bool:
        try:
            resp = await self.action({"Action": "Ping"}, timeout=timeout)
        except PbxError:
            return False
        return resp.get("Response") == "Success"

    async def _heartbeat_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat_s)
            if not self.connected:
                continue
            if not await self.ping(timeout=self.heartbeat_s):
                log.warning("%sAMI heartbeat lost at %s:%s: reconnecting", self.label,
                            self.host, self.port)
                transport = getattr(self._mgr.protocol, "transport", None)
                if transport is not None:
                    transport.abort()

    async def events(self) -> AsyncIterator[Message]:
        """Every wanted event, in order, until close()."""
        while (event := await self._events.get()) is not _CLOSED:
            yield event
        self._events.put_nowait(_CLOSED)  # for any other reader

    async def next_event(self, timeout: float) -> Message | None:
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if event is _CLOSED:
            self._events.put_nowait(_CLOSED)
            return None
        return event

    def close(self) -> None:
        if not self._closing:
            self._events.put_nowait(_CLOSED)  # ends events(): the link is gone for good
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._mgr.close()
