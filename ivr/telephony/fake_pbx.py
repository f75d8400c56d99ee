"""A fake Asterisk for tests: real AMI and real FastAGI over loopback sockets, no root, no PBX.

In the manner of httpx's MockTransport, but on the wire: the unmodified controller stack
(panoramisk's Manager inside Ami/AmiNode, the FastAGI server of ivr/telephony/fastagi.py) talks
to it as to Asterisk 22 running dialplans/ivr-outbound.conf with simulated callees.

    async with FakePbx({"+33199000010": answer(["1"]), "+33199000070": busy()},
                       user="ivr", secret="s") as pbx:
        node = AmiNode("fake", "127.0.0.1", pbx.ami_port, "ivr", "s")
        await node.connect()
        ...                                   # originate with IVR_AGI = the FastAGI server
        await pbx.wait_idle()
        assert pbx.max_live <= 2 and len(pbx.originates) == 2

Callees (ivr/telephony/fake_callee.py) are keyed by the number in `Local/<number>@ctx`, or
chosen by a callable(number) -> Callee; unknown numbers get `default` (failed, cause 1):
answer(keys, delay_s, hangup_at=, prompt_s=, amd=), hangup_after(s, keys), busy(), no_answer(),
congestion(), failed(cause), refuse(message). `keys` holds one entry per STREAM FILE / WAIT FOR
DIGIT command, in order, GET OPTION counting as both (None: no key; a key the command does not
list as escape digit is lost).

What it plays, per Originate (Async, as the controller sends it):
- `Response: Success` / `Originate successfully queued` at once (refuse(), shutting_down:
  `Response: Error`), then the callee; a ring longer than the Originate's Timeout is no answer;
- unanswered: Hangup of the ;2 half (Uniqueid = OtherChannelId), Hangup of the ;1 half
  (ChannelId), then OriginateResponse Failure with the Reason (Asterisk's last control frame:
  busy 5/cause 17, congestion 8/34, no answer 3/19, failed 0/cause);
- answered: OriginateResponse Success (Reason 4), then Asterisk's side of FastAGI at IVR_AGI
  (agi_arg_1 = CALL_ID, agi_arg_2 = the callee's amd when IVR_AMD=1, agi_arg_3 = IVR_TOKEN,
  as ivr-outbound.conf passes them); the Hangups (cause 16)
  when the session ends, the callee's half first if the callee hung up. A refused FastAGI
  connection takes the dialplan's failsafe: UserEvent IvrFailsafe (CallId, Status: FAILURE)
  then Hangup cause 41 (failsafe=False: a plain Hangup, cause 16);
- the Hangup action ends a call (ringing: OriginateResponse Failure, Reason 1).

Faults: drop() cuts every AMI connection (clients reconnect), stop()/start() stop and resume
listening on the same port (calls go on; their events are lost), crash() also makes every call
vanish without an event, shutdown() tears every call down (cause 0) and sends Shutdown before
going away, shutting_down refuses Originates with Asterisk's "Asterisk is shutting down",
silent records actions but answers none. hold(channel_id) / hold(channel_id, False): the callee
puts the call on hold and takes it off (a re-INVITE a=sendonly, then sendrecv), as Asterisk 22
tells it: Hold / Unhold on the callee's channel (the ;2 half here), Linkedid the ChannelId; the
prompts play on regardless, as Asterisk's do into a held line. originate_lag_s: as in Asterisk, an Async Originate
is only queued by its Response; its channel exists (CoreShowChannels lists it, Hangup finds it,
the callee starts) that long later. Records: originates (every Originate, Variable as a dict),
actions, events, calls (by ChannelId, with the AGI commands received), live (ChannelIds in
progress), shown (the Uniqueids of each CoreShowChannels answer), max_live, logins.
It imports nothing from ivr/campaign or ivr/store: it is test infrastructure.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from ivr.telephony.contract import (EVENT_JOURNALED, JOURNAL_FAMILY, OUTBOUND_CONTEXT,
                                    OUTBOUND_EXTEN)
from ivr.telephony.fake_callee import (Call, Callee, Player, answer, busy, congestion, failed,
                                       hangup_after, no_answer, refuse)

__all__ = ["FakePbx", "Call", "Callee", "answer", "busy", "congestion", "failed",
           "hangup_after", "no_answer", "refuse"]

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
SHUTTING_DOWN = "Asterisk is shutting down"  # what manager.c answers every action then
Script = Mapping[str, Callee] | Callable[[str], Callee]


class _Session:
    """One AMI connection."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.task = asyncio.current_task()
        self.authed = False
        self.events = True

    def send(self, fields: Mapping[str, Any]) -> None:
        lines = []
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key}: {item}\r\n")
        if not self.writer.is_closing():
            self.writer.write(("".join(lines) + "\r\n").encode())


def dialled_number(channel: str) -> str:
    """`Local/+33612345678@ivr-sim` -> `+33612345678`."""
    return channel.split("/", 1)[-1].split("@", 1)[0]


class FakePbx:
    """An async context manager serving AMI on 127.0.0.1:`ami_port` (0: any free port)."""

    def __init__(self, callees: Script | None = None, *, user: str = "ivr", secret: str = "secret",
                 default: Callee | None = None, failsafe: bool = True, port: int = 0) -> None:
        self.callees: Script = callees if callees is not None else {}
        self.user, self.secret = user, secret
        self.default = default or failed(1)
        self.ami_port = port
        self.shutting_down = False      # every Originate is refused as during a graceful stop
        self.silent = False             # actions are read and recorded, never answered (hung)
        self.originate_lag_s = 0.0      # a queued Originate's channel exists this long later
        self.originates: list[dict[str, Any]] = []  # every Originate action received
        self.actions: list[dict[str, Any]] = []     # every action received, Login included
        self.events: list[dict[str, Any]] = []      # every event sent (or that would have been)
        self.calls: dict[str, Call] = {}            # by ChannelId, ended ones included
        self.shown: list[set[str]] = []  # the Uniqueids of each CoreShowChannels answer
        self.max_live = 0
        self.journal: dict[str, str] = {}  # AstDB's JOURNAL_FAMILY: key -> epoch
        self.logins = 0
        self._live: dict[str, Call] = {}
        self._queued: dict[str, asyncio.TimerHandle] = {}  # Originates without a channel yet
        self._sessions: set[_Session] = set()
        self._server: asyncio.AbstractServer | None = None
        self._seq = itertools.count(1)
        self._idle = asyncio.Event()
        self._idle.set()
        self._player = Player(self._emit, self._ended, failsafe)

    # -- lifecycle and faults -----------------------------------------------------------------
    async def __aenter__(self) -> "FakePbx":
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.crash()

    async def start(self) -> None:
        """Listen (again, on the same port after stop())."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.ami_port,
                                                  reuse_address=True)
        self.ami_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every AMI connection; calls go on (their events are lost)."""
        if self._server is not None:
            self._server.close()
        tasks = [s.task for s in self._sessions if s.task is not None]
        self.drop()
        await asyncio.gather(*tasks, return_exceptions=True)  # every handler has ended
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def drop(self) -> None:
        """Abort every AMI connection, like a network cut; the server keeps listening."""
        for session in list(self._sessions):
            session.writer.transport.abort()
        self._sessions.clear()

    async def crash(self) -> None:
        """The PBX dies: no more AMI, every call vanishes without an event."""
        await self.stop()
        self._forget_queued()
        for call in list(self._live.values()):
            if call.task is not None:
                call.task.cancel()
        tasks = [c.task for c in self._live.values() if c.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
        self._idle.set()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Asterisk stopping at once ("core stop now", a restart): Originates refused, every
        call torn down with cause 0 (no callee hung up), the Shutdown event, then no AMI.
        start() brings it back, taking calls again."""
        self.shutting_down = True
        self._forget_queued()  # queued Originates fail with the PBX
        for call in list(self._live.values()):
            if call.cause is None:
                call.cause = 0
            call.gone.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            pass  # an AGI session that never sent another command: crash() ends it
        self._emit({"Event": "Shutdown", "Privilege": "system,all", "Shutdown": "Cleanly",
                    "Restart": "False"})
        for session in list(self._sessions):
            session.writer.close()  # after the Shutdown event has gone out, unlike drop()
        await self.crash()
        self.shutting_down = False

    @property
    def live(self) -> set[str]:
        """ChannelIds of the calls in progress (one per call; a queued Originate's once its
        channel exists)."""
        return set(self._live)

    def hold(self, channel_id: str, held: bool = True) -> None:
        """The callee of a live call puts it on hold (held) or takes it off: Hold / Unhold."""
        call = self._live[channel_id]
        fields = {"Event": "Hold" if held else "Unhold", "Privilege": "call,all",
                  "Channel": call.name(2), "ChannelState": "6", "ChannelStateDesc": "Up",
                  "Uniqueid": call.other_id, "Linkedid": call.channel_id}
        self._emit(fields | ({"MusicClass": "default"} if held else {}))

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no call is in progress."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- AMI ------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        self._sessions.add(session)
        writer.write(BANNER)
        try:
            while (action := await _read_message(reader)) is not None:
                self.actions.append(action)
                if str(action.get("Action", "")).lower() == "originate":  # even if silent
                    variables = _variables(action.get("Variable"))
                    self.originates.append(action | {"Variable": variables})
                if self.silent:
                    continue
                if not self._handle(session, action):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(session)
            writer.close()

    def _handle(self, session: _Session, action: dict[str, Any]) -> bool:
        """Answer one action; False closes the connection."""
        name = str(action.get("Action", "")).lower()
        reply: dict[str, Any] = {"Response": "Success"}
        if "ActionID" in action:
            reply["ActionID"] = action["ActionID"]
        if name == "login":
            return self._login(session, action, reply)
        if name == "logoff":
            session.send(reply | {"Response": "Goodbye", "Message": "Thanks for all the fish."})
            return False
        if not session.authed:
            session.send(reply | {"Response": "Error", "Message": "Authentication Required"})
            return False
        if name == "ping":
            session.send(reply | {"Ping": "Pong", "Timestamp": "0.000000"})
        elif name == "originate":
            self._originate(session, action, reply)
        elif name == "hangup":
            self._hangup_action(session, action, reply)
        elif name == "coreshowchannels":
            self._show_channels(session, reply)
        elif name == "dbgettree":
            self._db_tree(session, action, reply)
        else:
            session.send(reply | {"Response": "Error", "Message": "Invalid/unknown command"})
        return True

    def _login(self, session: _Session, action: dict[str, Any], reply: dict[str, Any]) -> bool:
        if action.get("Username") != self.user or action.get("Secret") != self.secret:
            session.send(reply | {"Response": "Error", "Message": "Authentication failed"})
            return False  # Asterisk closes the session on a failed login
        session.authed = True
        session.events = str(action.get("Events", "on")).lower() != "off"
        self.logins += 1
        session.send(reply | {"Message": "Authentication accepted"})
        if session.events:
            session.send({"Event": "FullyBooted", "Privilege": "system,all",
                          "Uptime": "1", "LastReload": "1", "Status": "Fully Booted"})
        return True

    def _emit(self, fields: dict[str, Any]) -> None:
        self.events.append(fields)
        for session in list(self._sessions):
            if session.authed and session.events:
                session.send(fields)

    def _show_channels(self, session: _Session, reply: dict[str, Any]) -> None:
        aid = {k: v for k, v in reply.items() if k == "ActionID"}
        session.send(reply | {"EventList": "start", "Message": "Channels will follow"})
        shown: set[str] = set()
        for call in self._live.values():
            for half, uid in ((1, call.channel_id), (2, call.other_id)):
                if uid in call.ended:
                    continue
                shown.add(uid)
                state = ("6", "Up") if call.answered else ("5", "Ringing") if half == 1 \
                    else ("4", "Ring")
                session.send({"Event": "CoreShowChannel", **aid, "Channel": call.name(half),
                              "ChannelState": state[0], "ChannelStateDesc": state[1],
                              "CallerIDNum": call.number, "Context": OUTBOUND_CONTEXT,
                              "Exten": OUTBOUND_EXTEN, "Priority": "1", "Uniqueid": uid,
                              "Linkedid": call.channel_id, "Application": "AGI" if call.answered else "",
                              "Duration": "00:00:01"})
        self.shown.append(shown)
        session.send({"Event": "CoreShowChannelsComplete", **aid, "EventList": "Complete",
                      "ListItems": str(len(shown))})

    def _db_tree(self, session: _Session, action: dict[str, Any], reply: dict[str, Any]) -> None:
        """AstDB as DBGetTree answers it; only the failsafes' journal is kept here."""
        aid = {k: v for k, v in reply.items() if k == "ActionID"}
        family = str(action.get("Family", ""))
        rows = self.journal.items() if family == JOURNAL_FAMILY else ()
        session.send(reply | {"EventList": "start", "Message": "Result will follow"})
        for key, value in rows:
            session.send({"Event": "DBGetTreeResponse", **aid, "Key": f"/{family}/{key}",
                          "Val": value})
        session.send({"Event": "DBGetTreeComplete", **aid, "EventList": "Complete",
                      "ListItems": str(len(rows))})

    def journal_optout(self, key: str, epoch: int) -> None:
        """A failsafe journaled an opposition: [ivr-callback]'s (key: the caller ID) or
        [ivr-outbound]'s (key: call/<the channel's Uniqueid>)."""
        self.journal[key] = str(epoch)
        self._emit({"Event": "UserEvent", "Privilege": "user,all",
                    "UserEvent": EVENT_JOURNALED, "Uniqueid": f"cb-{epoch}"})

    def _hangup_action(self, session: _Session, action: dict[str, Any],
                       reply: dict[str, Any]) -> None:
        target = str(action.get("Channel", ""))
        call = next((c for c in self._live.values()
                     if target in (c.channel_id, c.other_id, c.name(1), c.name(2))), None)
        if call is None:
            session.send(reply | {"Response": "Error", "Message": "No such channel"})
            return
        if call.cause is None:
            call.cause = int(str(action.get("Cause") or 16))
        call.gone.set()
        session.send(reply | {"Message": "Channel Hungup"})

    # -- calls --------------------------------------------------------------------------------
    def _originate(self, session: _Session, action: dict[str, Any],
                   reply: dict[str, Any]) -> None:
        variables = self.originates[-1]["Variable"]
        if self.shutting_down:
            session.send(reply | {"Response": "Error", "Message": SHUTTING_DOWN})
            return
        number = dialled_number(str(action.get("Channel", "")))
        callee = self._callee(number)
        if callee.kind == "refuse":
            session.send(reply | {"Response": "Error", "Message": callee.message})
            return
        channel_id = str(action.get("ChannelId") or f"fake-{next(self._seq)}")
        call = Call(channel_id, number, dict(action), variables, callee, next(self._seq))
        self.calls[channel_id] = call
        self._idle.clear()
        session.send(reply | {"Message": "Originate successfully queued"})
        if self.originate_lag_s > 0:  # Asterisk makes the channel later, in a thread of its own
            self._queued[channel_id] = asyncio.get_running_loop().call_later(
                self.originate_lag_s, self._begin, call)
        else:
            self._begin(call)

    def _begin(self, call: Call) -> None:
        """The queued Originate's channel exists: listed, and the callee starts."""
        self._queued.pop(call.channel_id, None)
        self._live[call.channel_id] = call
        self.max_live = max(self.max_live, len(self._live))
        call.task = asyncio.get_running_loop().create_task(self._player.play(call))

    def _forget_queued(self) -> None:
        """Originates queued without a channel yet vanish (the PBX dies or stops)."""
        for handle in self._queued.values():
            handle.cancel()
        self._queued.clear()
        if not self._live:
            self._idle.set()

    def _ended(self, call: Call) -> None:
        self._live.pop(call.channel_id, None)
        if not self._live and not self._queued:
            self._idle.set()

    def _callee(self, number: str) -> Callee:
        if callable(self.callees):
            return self.callees(number)
        return self.callees.get(number, self.default)

async def _read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """One AMI message (`Key: Value` lines up to a blank line); repeated keys become lists."""
    fields: dict[str, Any] = {}
    while True:
        raw = await reader.readline()
        if not raw:
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if fields:
                return fields
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in fields:
            old = fields[key]
            fields[key] = (old if isinstance(old, list) else [old]) + [value]
        else:
            fields[key] = value


def _variables(raw: Any) -> dict[str, str]:
    """`Variable: K=V` lines (one or many) as a dict."""
    items = raw if isinstance(raw, list) else [raw] if raw else []
    return dict(str(item).partition("=")[::2] for item in items)
