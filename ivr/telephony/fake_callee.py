"""The fake PBX's simulated callees: their scripts, their calls, and Asterisk's side of FastAGI.

Test infrastructure for ivr/telephony/fake_pbx.py (which re-exports the script builders). A
script says how the callee answers the Originate and, once answered, which key it presses at
each prompt command (STREAM FILE / WAIT FOR DIGIT, in order; None: no key) and when it hangs up.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ivr.telephony.node import LOCAL_OTHER

DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
ENDPOS_KEY, ENDPOS_FULL = 4000, 16000  # samples played: never 0 (that means a missing file)
CAUSE_TEXT = {1: "Unallocated (unassigned) number", 3: "No route to destination",
              16: "Normal Clearing", 17: "User busy", 19: "No answer",
              34: "Circuit/channel congestion", 41: "Temporary failure"}
_ESCAPE = re.compile(r'STREAM FILE\s+\S+\s+"?([0-9*#]*)"?', re.IGNORECASE)


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


def answer(keys: Sequence[str | None] = (), delay_s: float = 0.0, *,
           hangup_at: int | None = None, prompt_s: float = 0.0, amd: str = "HUMAN") -> Callee:
    """Answers after delay_s; presses keys[i] at the i-th prompt command; hangs up at prompt
    `hangup_at` if given (else stays until the IVR hangs up)."""
    return Callee("answer", delay_s, tuple(keys), hangup_at, None, prompt_s, amd)


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
    task: asyncio.Task | None = None

    @property
    def other_id(self) -> str:
        return self.fields.get("OtherChannelId") or self.channel_id + LOCAL_OTHER

    def name(self, half: int) -> str:
        return f"Local/{self.number}@ivr-sim-{self.seq:08x};{half}"


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
        verb = command.upper()
        if verb.startswith("GET VARIABLE HANGUPCAUSE"):  # readable on a dead channel too
            return f"200 result=1 ({self.call.cause or 0})"
        if self.call.gone.is_set():
            return DEAD
        if verb.startswith(("STREAM FILE", "WAIT FOR DIGIT")):
            return await self._prompt(command)
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


def agi_headers(*, url: str, channel: str, uniqueid: str, caller_id: str, call_id: str,
                amd: str) -> dict[str, str]:
    """The headers Asterisk sends first, for AGI(url,CALL_ID,AMDSTATUS) in [ivr-outbound]."""
    m = re.fullmatch(r'\s*"?([^"<]*)"?\s*<([^>]*)>\s*', caller_id)
    name, number = (m.group(1).strip(), m.group(2)) if m else ("", caller_id)
    return {"agi_network": "yes", "agi_network_script": url.rsplit("/", 1)[-1],
            "agi_request": url, "agi_channel": channel, "agi_language": "en",
            "agi_type": "Local", "agi_uniqueid": uniqueid, "agi_version": "22.0.0",
            "agi_callerid": number or "unknown", "agi_calleridname": name or "unknown",
            "agi_callingpres": "0", "agi_callingani2": "0", "agi_callington": "0",
            "agi_callingtns": "0", "agi_dnid": "unknown", "agi_rdnis": "unknown",
            "agi_context": "ivr-outbound", "agi_extension": "s", "agi_priority": "6",
            "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "1",
            "agi_arg_1": call_id, "agi_arg_2": amd}
