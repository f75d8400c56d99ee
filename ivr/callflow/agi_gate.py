"""Who may open an `ivr` FastAGI session: the second gate, after `agi.allowed_peers`.

Anyone who can reach the FastAGI port can send any headers, so a session is accepted only when
all of these hold (issue 19):
- the token (ARG_TOKEN) matches the hash stored with the attempt, compared in constant time;
- the attempt is in flight for this controller (its dialer placed or adopted it);
- `agi_uniqueid` is the channel id that was originated (calls.channel_id);
- the token was not spent by an earlier session and no other session for the call is active.
A refusal names the reason and the call id, never the token, and writes nothing.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

from ivr.store.base import Row
from ivr.telephony.agi_auth import token_matches
from ivr.telephony.contract import ARG_CALL_ID, ARG_TOKEN
from ivr.telephony.fastagi import HEADER_UNIQUEID

_UNREAD: Any = object()  # admit's `row`: not read ahead, read it now


def _attempt_id(headers: Mapping[str, str]) -> int | None:
    """The session's CALL_ID as an attempt id (at most 18 ASCII digits), None if it is not one
    (isdigit alone takes '²', which int() refuses, and other scripts' digits)."""
    raw = headers.get(ARG_CALL_ID, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


class Flight(Protocol):
    """What the gate reads of an attempt in flight (campaign.nodes.InFlight)."""
    channel_id: str
    session_opened: bool


class Refused(Exception):
    """The session is not the attempt's: hang up, write nothing. The message is safe to log."""


class SessionGate:
    """Checks and spends a session's right to drive a call. `flights`: the dialer's attempts
    in flight by call id; `active`: the call ids whose IVR session is running (shared with
    the dialer, which waits for them before settling)."""

    def __init__(self, read_call: Callable[[int], Row | None],
                 flights: Mapping[int, Flight], active: set[int],
                 known: MutableMapping[int, Row] | None = None,
                 read_off_loop: Callable[[int], Awaitable[Row | None]] | None = None) -> None:
        self.read_call = read_call
        # `read_off_loop`: the same read awaited (a worker thread on PostgreSQL), for admit_async
        self.read_off_loop = read_off_loop
        self.flights = flights
        self.active = active
        # `known`: rows as the dialer's claim wrote them, taken (once) instead of a read of the
        # store; the checks are the same, the spent token is the flight's session_opened.
        self.known: MutableMapping[int, Row] = known if known is not None else {}

    async def admit_async(self, headers: Mapping[str, str]) -> Row:
        """admit, the row read ahead by `read_off_loop` when the claim's is not at hand (no
        round trip on the loop); every check still runs after the read, with no await."""
        call_id, row = _attempt_id(headers), _UNREAD
        if self.read_off_loop is not None and call_id is not None and call_id not in self.known:
            row = await self.read_off_loop(call_id)
        return self.admit(headers, row)

    def admit(self, headers: Mapping[str, str], row: Any = _UNREAD) -> Row:
        """The attempt's row when the session may drive it (now marked opened and active);
        raises Refused otherwise. No await inside: two sessions cannot both pass."""
        call_id = _attempt_id(headers)
        if call_id is None:
            raise Refused(f"CALL_ID {headers.get(ARG_CALL_ID, '')[:20]!r} is not an attempt id")
        call = self.known.pop(call_id, None) or (
            self.read_call(call_id) if row is _UNREAD else row)
        if call is None:
            raise Refused(f"call {call_id}: no such attempt")
        if not token_matches(headers.get(ARG_TOKEN, ""), call.get("token_hash")):
            raise Refused(f"call {call_id}: wrong, missing or spent token")
        flight = self.flights.get(call_id)
        if flight is None:
            raise Refused(f"call {call_id}: not in flight for this controller")
        uniqueid = headers.get(HEADER_UNIQUEID, "")
        if uniqueid != flight.channel_id or uniqueid != call.get("channel_id"):
            raise Refused(f"call {call_id}: channel {uniqueid[:64]!r} is not the one originated")
        if flight.session_opened or call_id in self.active:
            raise Refused(f"call {call_id}: its token was already used by a session")
        flight.session_opened = True  # single use, before any await
        self.active.add(call_id)
        return call
