"""The fake PBX's calls: callee scripts, each call's life as AMI events, Asterisk's FastAGI side.

Test infrastructure for ivr/telephony/fake_pbx.py (which re-exports the script builders). A
script says how the callee answers the Originate and, once answered, which key it presses at
each prompt command (STREAM FILE / WAIT FOR DIGIT, in order, a GET OPTION counting as both; None:
no key) and when it hangs up.
`Player` plays one call from the queued Originate to its Hangups; `AgiLeg` is Asterisk's side of
its FastAGI session. Event orders, causes and AGI replies follow the sandbox Asterisk 22.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ivr.telephony.contract import (ARG_AMD_STATUS, ARG_CALL_ID, ARG_TOKEN, EVENT_FAILSAFE,
                                    FAILSAFE_CALL_ID, FAILSAFE_STATUS, OUTBOUND_CONTEXT,
                                    OUTBOUND_EXTEN, ROUTE_IVR, VAR_AGI_URL, VAR_AMD, VAR_CALL_ID,
                                    VAR_HANGUP_CAUSE, VAR_TOKEN)
from ivr.telephony.node import LOCAL_OTHER

DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
ENDPOS_KEY, ENDPOS_FULL = 4000, 16000  # samples played: never 0 (that means a missing file)
DEFAULT_AGI = "agi://127.0.0.1:4573"  # the dialplan's fallback when IVR_AGI is empty
# OriginateResponse Reason: the last control frame Asterisk saw (AST_CONTROL_*).
R_FAILED, R_RINGING, R_ANSWERED, R_BUSY, R_CONGESTION = 0, 3, 4, 5, 8
_UNANSWERED = {"busy": R_BUSY, "congestion": R_CONGESTION, "failed": R_FAILED}
CAUSE_TEXT = {1: "Unallocated (unassigned) number", 3: "No route to destination",
              16: "Normal Clearing", 17: "User busy", 19: "No answer",
              34: "Circuit/channel congestion", 41: "Temporary failure"}
_ESCAPE = re.compile(r'STREAM FILE\s+\S+\s+"?([0-9*#]*)"?', re.IGNORECASE)
_OPTION = re.compile(r'GET OPTION\s+(\S+)\s+"?([0-9*#]*)"?', re.IGNORECASE)


@dataclass(frozen=True)
class Callee:
    """A scripted callee. Build one with answer(), busy(), no_answer(), congestion(), failed(),
    refuse() or hangup_after()."""
    kind: str                            # answer | busy | no_answer | congestion | failed | refuse
    delay_s: float = 0.0                 # rings this long before answering / failing
    keys: tuple[str | None, ...] = ()    # one per STREAM FILE / WAIT FOR DIGIT, in order
    hangup_at: int | None = None         # hangs up at that prompt command (0-based)
    hangup_after_s: float | None = None  # hangs up this long after answering
    prompt_s: float = 0.0                # each prompt command takes this long
    amd: str = "HUMAN"                   # AMDSTATUS handed to the AGI when IVR_AMD=1
    cause: int = 16                      # Q.850 cause of an unanswered kind
    message: str = "Originate failed"    # refuse: the Error's Message
    amd_s: float = 0.0                   # AMD() listens this long between answer and AGI
    unreadable: bool = False             # Asterisk cannot open the prompt files (permissions)


def answer(keys: Sequence[str | None] = (), delay_s: float = 0.0, *,
           hangup_at: int | None = None, prompt_s: float = 0.0, amd: str = "HUMAN",
           amd_s: float = 0.0) -> Callee:
    """Answers after delay_s; presses keys[i] at the i-th prompt command; hangs up at prompt
    `hangup_at` if given (else stays until the IVR hangs up). `amd_s`: the time AMD() takes
    before the AGI starts, whether or not IVR_AMD asks for it."""
    return Callee("answer", delay_s, tuple(keys), hangup_at, None, prompt_s, amd, amd_s=amd_s)


def hangup_after(s: float, keys: Sequence[str | None] = (), *, prompt_s: float = 0.0,
                 delay_s: float = 0.0) -> Callee:
    """Answers, then hangs up `s` seconds later, whatever the IVR is doing."""
    return Callee("answer", delay_s, tuple(keys), None, s, prompt_s)


def busy(delay_s: float = 0.0) -> Callee:
    return Callee("busy", delay_s, cause=17)


def no_answer() -> Callee:
    """Rings until the Originate's Timeout."""
    return Callee("no_answer", cause=19)


def congestion(delay_s: float = 0.0) -> Callee:
    return Callee("congestion", delay_s, cause=34)


def failed(cause: int = 1, delay_s: float = 0.0) -> Callee:
    """The network rejects the number (1 unallocated, 3 no route)."""
    return Callee("failed", delay_s, cause=cause)


def refuse(message: str = "Originate failed") -> Callee:
    """The Originate itself is answered with `Response: Error`: nothing is dialled."""
    return Callee("refuse", message=message)


@dataclass
class Call:
    """One originated call, as the fake PBX records it (FakePbx.calls): the ;1 half
    (channel_id, runs the IVR) and the ;2 half (the callee, other_id)."""
    channel_id: str
    number: str
    fields: dict[str, Any]
    variables: dict[str, str]
    callee: Callee
    seq: int
    answered: bool = False
    cause: int | None = None                 # set when someone hangs the call up
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    ended: set[str] = field(default_factory=set)  # Uniqueids whose Hangup was sent
    agi: list[str] = field(default_factory=list)  # AGI commands received, in order
    task: asyncio.Task[None] | None = None

    @property
    def other_id(self) -> str:
        return self.fields.get("OtherChannelId") or self.channel_id + LOCAL_OTHER

    def name(self, half: int) -> str:
        """As Asterisk names Local channels: the dial string, a sequence number, the half."""
        return f"{self.fields.get('Channel') or 'Local/' + self.number}-{self.seq:08x};{half}"


class AgiLeg:
    """Asterisk's side of one FastAGI session: headers, then one result per command line."""

    def __init__(self, call: Call, headers: dict[str, str],
                 on_callee_hangup: Callable[[], None]) -> None:
        self.call = call
        self.headers = headers
        self.on_callee_hangup = on_callee_hangup  # the ;2 half ends now
        self.prompts = 0

    async def run(self, url: str) -> bool:
        """False if the FastAGI server refused the connection (AGISTATUS=FAILURE)."""
        parts = urlsplit(url)
        try:
            reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1",
                                                           parts.port or 4573)
        except OSError:
            return False
        after = self.call.callee.hangup_after_s
        timer = (asyncio.get_running_loop().call_later(after, self._callee_hangs_up)
                 if after is not None else None)
        try:
            text = "".join(f"{k}: {v}\n" for k, v in self.headers.items()) + "\n"
            writer.write(text.encode())
            await writer.drain()
            while line := await reader.readline():
                command = line.decode("utf-8", "replace").strip()
                self.call.agi.append(command)
                writer.write((await self._reply(command) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass  # the controller went away: the call ends like an AGI that returned
        except asyncio.CancelledError:  # the PBX crashed: the socket dies, no goodbye
            writer.transport.abort()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            writer.close()
        return True

    def _callee_hangs_up(self) -> None:
        if not self.call.gone.is_set():
            self.on_callee_hangup()

    async def _reply(self, command: str) -> str:
        verb = command.upper().replace("\"", "")  # an argument may come quoted
        if verb.startswith(f"GET VARIABLE {VAR_HANGUP_CAUSE}"):  # readable on a dead channel too
            return f"200 result=1 ({self.call.cause or 0})"
        if self.call.gone.is_set():
            return DEAD
        if verb.startswith(("STREAM FILE", "WAIT FOR DIGIT")):
            return await self._prompt(command)
        if verb.startswith("GET OPTION"):
            return await self._option(command)
        if verb.startswith("CHANNEL STATUS"):
            return "200 result=6"  # Up
        if verb.startswith("HANGUP"):  # the IVR hangs up: Asterisk leaves cause 0
            if self.call.cause is None:
                self.call.cause = 0
            self.call.gone.set()
            return "200 result=1"
        return "200 result=0"

    async def _prompt(self, command: str) -> str:
        """One prompt command: the scripted key (if STREAM FILE lets it interrupt) or none,
        or the callee hangs up (-1, then the channel is dead)."""
        callee, index = self.call.callee, self.prompts
        self.prompts += 1
        escape = _ESCAPE.match(command)
        if callee.unreadable and command.upper().startswith("STREAM FILE"):
            return "200 result=-1 endpos=0"  # res_agi: a file it cannot open, the line still up
        cut = "200 result=-1" + (f" endpos={ENDPOS_KEY}" if escape else "")  # hung up meanwhile
        if callee.hangup_at is not None and index >= callee.hangup_at:
            self._callee_hangs_up()
            return cut
        try:
            await asyncio.wait_for(self.call.gone.wait(), callee.prompt_s)
        except asyncio.TimeoutError:
            pass
        if self.call.gone.is_set():
            return cut
        key = callee.keys[index] if index < len(callee.keys) else None
        if escape is not None:  # a key that is not an escape digit does not interrupt
            key = key if key and key in escape.group(1) else None
            return f"200 result={ord(key)} endpos={ENDPOS_KEY}" if key else \
                f"200 result=0 endpos={ENDPOS_FULL}"
        return f"200 result={ord(key)}" if key else "200 result=0"

    async def _option(self, command: str) -> str:
        """GET OPTION: a STREAM FILE, then a WAIT FOR DIGIT (two entries of the script) in
        one command, as res_agi does: a key while listening counts only if an escape digit,
        and a hangup while listening reads as result=0 (then the channel is dead)."""
        m = _OPTION.match(command)
        if m is None:
            return "520 Invalid command syntax."
        path, escape = m.groups()
        played = await self._prompt(f'STREAM FILE {path} "{escape}"')
        if played != f"200 result=0 endpos={ENDPOS_FULL}":
            return played  # a key cut it, a hangup, a file it cannot open
        code = int((await self._prompt("WAIT FOR DIGIT")).split("=")[1])
        key = chr(code) if code > 0 and chr(code) in escape else None
        return f"200 result={ord(key) if key else 0} endpos={ENDPOS_FULL}"


def agi_headers(*, url: str, channel: str, uniqueid: str, caller_id: str, call_id: str,
                amd: str, token: str = "") -> dict[str, str]:
    """The headers Asterisk sends first, for AGI(url,CALL_ID,AMDSTATUS,IVR_TOKEN) in
    [ivr-outbound] (an empty argument is still sent, as Asterisk does)."""
    m = re.fullmatch(r'\s*"?([^"<]*)"?\s*<([^>]*)>\s*', caller_id)
    name, number = (m.group(1).strip(), m.group(2)) if m else ("", caller_id)
    return {"agi_network": "yes", "agi_network_script": url.rsplit("/", 1)[-1],
            "agi_request": url, "agi_channel": channel, "agi_language": "en",
            "agi_type": "Local", "agi_uniqueid": uniqueid, "agi_version": "22.0.0",
            "agi_callerid": number or "unknown", "agi_calleridname": name or "unknown",
            "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0",
            "agi_callingtns": "0", "agi_dnid": "unknown", "agi_rdnis": "unknown",
            "agi_context": OUTBOUND_CONTEXT, "agi_extension": OUTBOUND_EXTEN, "agi_priority": "6",
            "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "1",
            ARG_CALL_ID: call_id, ARG_AMD_STATUS: amd, ARG_TOKEN: token}


class Player:
    """Plays one call's script and reports it as Asterisk's AMI events, in Asterisk's order and
    with its causes (checked against the sandbox Asterisk 22)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None],
                 on_ended: Callable[[Call], None], failsafe: bool = True) -> None:
        self._emit = emit
        self.on_ended = on_ended    # both halves have hung up
        self.failsafe = failsafe    # the dialplan's failsafe (ivr-outbound.conf) is there

    async def play(self, call: Call) -> None:
        """From the queued Originate to both Hangups."""
        callee, ring_s = call.callee, int(str(call.fields.get("Timeout") or 30000)) / 1000
        rings_out = callee.kind == "no_answer" or callee.delay_s >= ring_s
        if await self._ring(call, ring_s if rings_out else callee.delay_s):
            cause = 16 if call.cause is None else call.cause  # Hangup action while ringing
            return self._ends_ringing(call, R_FAILED, cause)
        if rings_out:
            return self._ends_ringing(call, R_RINGING, 19)
        if callee.kind in _UNANSWERED:  # rejected at once: the IVR half carries no cause
            self._originate_response(call, False, _UNANSWERED[callee.kind])
            return self.end(call, ((call.channel_id, 0), (call.other_id, callee.cause)))
        call.answered = True
        self._originate_response(call, True, R_ANSWERED)
        failsafe = False
        try:
            if callee.amd_s and await self._ring(call, callee.amd_s):
                return  # hung up during AMD: the finally ends both halves
            failsafe = await self._agi(call)
        finally:
            cause = 16 if call.cause is None else call.cause  # the dialplan's Hangup()
            halves = [(call.channel_id, cause), (call.other_id, cause)]
            self.end(call, halves[::-1] if failsafe else halves)  # failsafe: ;2 first

    async def _ring(self, call: Call, seconds: float) -> bool:
        """True if the call was hung up (Hangup action) while ringing."""
        try:
            await asyncio.wait_for(call.gone.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    async def _agi(self, call: Call) -> bool:
        """The AGI() of [ivr-outbound]; True if it took the failsafe."""
        url = f"{call.variables.get(VAR_AGI_URL) or DEFAULT_AGI}/{ROUTE_IVR}"
        headers = agi_headers(url=url, channel=call.name(1), uniqueid=call.channel_id,
                              caller_id=str(call.fields.get("CallerID", "")),
                              call_id=call.variables.get(VAR_CALL_ID, ""),
                              amd=call.callee.amd if call.variables.get(VAR_AMD) == "1" else "",
                              token=call.variables.get(VAR_TOKEN, ""))
        leg = AgiLeg(call, headers, on_callee_hangup=lambda: self.callee_hangs_up(call))
        if await leg.run(url) or not self.failsafe:
            return False
        # FastAGI unreachable (AGISTATUS=FAILURE): the dialplan's failsafe
        self._emit({"Event": "UserEvent", "Privilege": "user,all", "Channel": call.name(1),
                    "Uniqueid": call.channel_id, "UserEvent": EVENT_FAILSAFE,
                    FAILSAFE_CALL_ID: call.variables.get(VAR_CALL_ID, ""),
                    FAILSAFE_STATUS: "FAILURE"})
        call.cause = 41  # Hangup(41): temporary failure, the controller retries
        return True

    def callee_hangs_up(self, call: Call) -> None:
        """The callee's half goes first; the IVR half ends with its AGI session."""
        if call.cause is None:
            call.cause = 16
        call.gone.set()
        self.end(call, ((call.other_id, 16),))

    def _ends_ringing(self, call: Call, reason: int, cause: int) -> None:
        """Ring timeout or Hangup action: the callee's half, the result, then the IVR half."""
        self.end(call, ((call.other_id, cause),))
        self._originate_response(call, False, reason)
        self.end(call, ((call.channel_id, cause),))

    def _originate_response(self, call: Call, success: bool, reason: int) -> None:
        fields = {"Event": "OriginateResponse", "Privilege": "call,all",
                  "Response": "Success" if success else "Failure", "Channel": call.name(1),
                  "Context": call.fields.get("Context", ""), "Exten": call.fields.get("Exten", ""),
                  "Reason": str(reason), "Uniqueid": call.channel_id,
                  "CallerIDNum": "<unknown>", "CallerIDName": "<unknown>"}
        if "ActionID" in call.fields:
            fields["ActionID"] = call.fields["ActionID"]
        self._emit(fields)

    def end(self, call: Call, halves: Sequence[tuple[str, int]]) -> None:
        """Hangup events (Uniqueid, cause) for the halves not ended yet; the call is gone when
        both are."""
        for uid, cause in halves:
            if uid in call.ended:
                continue
            call.ended.add(uid)
            half = 1 if uid == call.channel_id else 2
            self._emit({"Event": "Hangup", "Privilege": "call,all", "Channel": call.name(half),
                        "ChannelState": "6" if call.answered else "5",
                        "Uniqueid": uid, "Linkedid": call.channel_id,
                        "Cause": str(cause), "Cause-txt": CAUSE_TEXT.get(cause, "Unknown")})
        if len(call.ended) == 2:
            self.on_ended(call)
