"""Per-node bookkeeping of the dialer: the attempts in flight on each PBX node and its hold,
and the checks on what goes into an Originate."""
from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ivr.campaign.clock import Clock, Timer
from ivr.compliance.preflight import caller_name_problem
from ivr.config_checks import check_dial_template
from ivr.errors import ConfigError
from ivr.numbers import is_e164
from ivr.telephony.node import PbxNode

UNSAFE = re.compile(r"[&,|/\\\r\n;'\"\s]")
FAULT_HOLD_S = 5.0      # no call on a node for this long after it tore calls down


def dial_string(template: str, number: str) -> str:
    """Fill the dial string, refusing anything that could inject into it."""
    if not is_e164(number):
        raise ConfigError(f"number {number!r} is not E.164 (+ and 6-15 digits): fix the contact")
    check_dial_template(template)
    return template.replace("{number}", number)


def safe_value(name: str, value: str) -> str:
    if UNSAFE.search(value.replace(" ", "")):
        raise ConfigError(f"{name} {value!r} contains characters not allowed in AMI fields")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be one line")
    return value


def safe_caller_name(value: str) -> str:
    """campaign.caller_name, the quoted display name of the caller ID: the rule `ivr check`
    applies (preflight.caller_name_problem), so what passes the check starts the run."""
    problem = caller_name_problem(value)
    if problem:
        raise ConfigError(problem)
    return value


@dataclass
class InFlight:
    call_id: int
    channel_id: str
    number: str
    node: str
    answered: bool = False
    hung_up: bool = False
    failed: bool = False       # the node reported the Originate as not answered
    cause: int | None = None
    reason: int | None = None  # Asterisk's reason code of a failed Originate
    unsure: bool = False       # Originate sent, reply lost: only reconciliation may settle it
    link: int | None = None    # the node's link (PbxNode.link) it was sent on; None: not yet
    deadline: float = math.inf  # clock.monotonic() past which the call is settled (deadline.py)
    session_opened: bool = False  # its AGI token was spent by an accepted session (agi_gate)
    attempt: int = 1  # calls.attempt: the retry rule needs no read of the row to settle it
    settle: Timer | None = field(default=None, repr=False)


class NodeState:
    """One node and what the dialer keeps about it: its calls, its hold, its reconciliation."""

    def __init__(self, node: PbxNode, clock: Clock) -> None:
        self.node = node
        self.name = node.name
        self.clock = clock
        self.calls: dict[str, InFlight] = {}  # by channel_id
        self.hold_until = 0.0  # clock.monotonic() before which no call is placed here
        self.reconciling = False
        self.down_since: float | None = None  # clock.monotonic() when its link was seen down
        self.lost = False  # its Asterisk died: its calls were settled (pool_watch)
        self.told_down = False  # the log said this outage holds calls up (pool_watch)
        self.next_probe = 0.0  # clock.monotonic() of pool_watch's next look at its AMI port
        # No call here has a deadline before this (a lower bound: calls that ended may have
        # had it). The deadline watch scans `calls` only once it has passed.
        self.earliest_deadline = math.inf

    def down_for(self, now: float) -> float:
        """How long (clock.monotonic() seconds) the node's link has been seen down; 0 while
        it is up. Both watches call it, so the outage is timed by whichever looks first."""
        if self.node.up:
            self.down_since = None
            return 0.0
        if self.down_since is None:
            self.down_since = now
        return now - self.down_since

    def add(self, flight: InFlight) -> None:
        """A call in flight on this node (the deadline watch's bound follows)."""
        self.calls[flight.channel_id] = flight
        self.earliest_deadline = min(self.earliest_deadline, flight.deadline)

    def hold(self, seconds: float = FAULT_HOLD_S) -> None:
        self.hold_until = max(self.hold_until, self.clock.monotonic() + seconds)

    def holding(self) -> bool:
        return self.reconciling or self.clock.monotonic() < self.hold_until

    def has_room(self) -> bool:
        cap = self.node.max_channels
        return cap <= 0 or len(self.calls) < cap

    def free_share(self, default_cap: int) -> float:
        """Free channels relative to the node's cap (its own, else `default_cap`)."""
        cap = self.node.max_channels if self.node.max_channels > 0 else default_cap
        return (cap - len(self.calls)) / cap

    def ready(self) -> bool:
        return self.node.up and not self.holding() and self.has_room()

    def why_not_ready(self) -> str:
        if not self.node.up:  # its calls wait for it: say so, the run cannot end before
            waiting = f" ({len(self.calls)} call(s) in flight wait for it)" if self.calls else ""
            return f"node {self.name} down{waiting}"
        if self.reconciling:
            return f"node {self.name} reconciling"
        if self.holding():
            return f"node {self.name} holding after a PBX fault"
        return "" if self.has_room() else f"node {self.name} full"


def pick(states: list[NodeState], default_cap: int, turn: int) -> NodeState:
    """The node for the next call: among the ready ones, the most free channels relative to
    its cap; ties go round-robin from `turn`. None ready: the first (it refuses)."""
    best: NodeState | None = None
    best_share = -math.inf
    n = len(states)
    for i in range(n):
        ns = states[(turn + i) % n]
        if ns.ready():
            share = ns.free_share(default_cap)
            if share > best_share:  # strictly: the first of equals from `turn` wins
                best, best_share = ns, share
    return best or states[0]


class StoredCauses:
    """The hangup cause each call's IVR outcome stored, by channel id, until that channel's
    late Hangup arrives: a Hangup carrying the same cause needs no write (the update would
    change nothing, but cost a store transaction per call). Bounded: a Hangup that came before
    the outcome was written leaves an entry nobody takes. Thread-safe: on a remote store the
    outcome is written from a worker thread."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._causes: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, channel_id: str, cause: str) -> None:
        with self._lock:
            self._causes[channel_id] = cause
            if len(self._causes) > self.limit:
                self._causes.popitem(last=False)

    def already(self, channel_id: str, cause: str) -> bool:
        """True when `cause` is what the store already holds for this channel's attempt."""
        with self._lock:
            return self._causes.pop(channel_id, None) == cause
