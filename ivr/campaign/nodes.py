"""Per-node bookkeeping of the dialer: the attempts in flight on each PBX node and its hold,
the checks on what goes into an Originate, and the caps shared with the campaign's other
controllers (Shares, below)."""
from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.campaign.clock import Clock, Timer
from ivr.compliance.preflight import caller_name_problem
from ivr.config_checks import check_dial_template
from ivr.errors import ConfigError
from ivr.numbers import is_e164
from ivr.store.base import Row
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.workers import in_store_thread
from ivr.telephony.node import PbxNode

log = logging.getLogger(__name__)

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
    prompt_failed: str = ""  # a sound Asterisk could not play on it (agi_ivr -> node_guard)
    # The dialplan's failsafe took it: settled `error` at its Hangup, after the legal mentions
    # the failsafe plays, so that the number stays in flight while its channel lives.
    failsafe: bool = False
    adopted: bool = False  # an earlier run's or another controller's live call (reconcile.py)
    settle: Timer | None = field(default=None, repr=False)
    # The callee's line put on hold (AMI Hold/Unhold): made at its first Hold, None for a
    # call never held (nothing to keep, nothing to read on the IVR's side)
    hold: LineHold | None = field(default=None, repr=False)


class LineHold:
    """A call's hold as AMI tells it (Hold on a re-INVITE sendonly/inactive, Unhold on
    sendrecv): Asterisk sends the callee no audio meanwhile. The IVR reads it around each
    prompt (agi_ivr.py): a prompt that overlapped a hold was not heard."""

    def __init__(self) -> None:
        self.held = False
        self.holds = 0  # Hold events seen: a prompt compares it before and after
        self.gone = False  # the call ended (its Hangup): nothing to wait for
        self.settled = asyncio.Event()  # set while not held (or gone)
        self.settled.set()

    def hold(self) -> None:
        self.held, self.holds = True, self.holds + 1
        self.settled.clear()

    def unhold(self) -> None:
        self.held = False
        self.settled.set()

    def end(self) -> None:
        self.gone = True
        self.settled.set()


class NodeState:
    """One node and what the dialer keeps about it: its calls, its hold, its reconciliation."""

    def __init__(self, node: PbxNode, clock: Clock) -> None:
        self.node = node
        self.name = node.name
        self.clock = clock
        self.calls: dict[str, InFlight] = {}  # by channel_id
        self.hold_until = 0.0  # clock.monotonic() before which no call is placed here
        self.reconciling = False
        # Channels whose Hangup came while reconciling: a listing may still show them (its
        # entries went out before), and one adopted then would wait for its deadline
        self.ended_while_reconciling: set[str] = set()
        self.down_since: float | None = None  # clock.monotonic() when its link was seen down
        self.lost = False  # its Asterisk died: its calls were settled (pool_watch)
        self.told_down = False  # the log said this outage holds calls up (pool_watch)
        self.next_probe = 0.0  # clock.monotonic() of pool_watch's next look at its AMI port
        # No call here has a deadline before this (a lower bound: calls that ended may have
        # had it). The deadline watch scans `calls` only once it has passed.
        self.earliest_deadline = math.inf
        # With other live controllers on the campaign: this one's part of max_channels
        # (Shares, below); None: alone, the whole cap.
        self.shared_cap: int | None = None

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

    def limit(self) -> int:
        """The calls this controller may have on the node: its max_channels, or its share of
        them beside other controllers; 0 = no cap."""
        cap = self.node.max_channels
        if cap <= 0 or self.shared_cap is None:
            return cap
        return min(cap, self.shared_cap)

    def has_room(self) -> bool:
        cap = self.node.max_channels
        return cap <= 0 or len(self.calls) < self.limit()

    def free_share(self, default_cap: int) -> float:
        """Free channels relative to the node's cap (its own, else `default_cap`)."""
        cap = self.node.max_channels if self.node.max_channels > 0 else default_cap
        limit = self.limit() if self.node.max_channels > 0 else default_cap
        return (limit - len(self.calls)) / cap

    def ready(self) -> bool:
        return self.node.up and not self.holding() and self.has_room()

    def full(self) -> bool:
        """Up and taking calls but for its free channels: one of its calls ending frees one."""
        return self.node.up and not self.holding() and not self.has_room()

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


# -- a node going down ------------------------------------------------------------------
RECENT_DOWN_S = 5.0     # in a pool, a node down for longer did not cut a call ending now


def hold_after_fault(states: list[NodeState], now: float, hold_s: float = FAULT_HOLD_S) -> None:
    """The PBX tore a call down (shutdown, restart): place no call for a while, so retries do
    not land on a PBX that is going away. In a pool: on the nodes that went down just now
    when there are some, else on all."""
    recent = [ns for ns in states if not ns.node.up and
              (ns.down_since is None or now - ns.down_since <= hold_s)]
    for ns in recent or states:
        ns.hold(hold_s)


async def went_down(states: list[NodeState], clock: Clock, within_s: float = 2.0,
                    node: str | None = None) -> bool:
    """Did a node shut down or drop its link around now, within `within_s`? (Shutdown, lost
    link.) A node of the pool that has been down for longer says nothing of this call's end.
    `node`: the call's own node only (another node's restart says nothing of a call it did
    not carry)."""
    deadline = clock.monotonic() + within_s
    alone = len(states) == 1  # one node: down at all is the answer, as ever
    states = [ns for ns in states if node is None or ns.name == node]
    while True:
        now = clock.monotonic()
        if any(not ns.node.up and (alone or ns.down_since is None or
                                   now - ns.down_since <= RECENT_DOWN_S)
               for ns in states):
            return True
        if now >= deadline:
            return False
        await clock.sleep(0.1)


# -- the caps shared by the campaign's controllers ----------------------------------------
# The campaign's caps shared by its live controllers (README: `dialer.max_concurrent`, or the
# console's lower pacing, is the campaign-wide cap; a node's `max_channels` caps the calls of
# every controller dialling through it).
#
# Each controller reads, once a SHARE_POLL_S and off the loop (a worker thread on PostgreSQL),
# the campaign's live controllers and the others' open attempts per node (store.peer_load: the
# `controllers` rows and their leases, the attempts in `calls`). It takes a share of each cap:
# cap // n, one more for the first cap % n controllers in id order; and never more than the cap
# less the others' open attempts last read, so that nobody overshoots while the shares move.
# A node's max_channels is split the same way among every live controller that may dial
# through it, whatever its campaign (another campaign's: calls on it, or it listed in the
# snapshot that controller publishes as it starts), less all their open attempts on it. The
# campaign's calls_per_second is split too: each paces at rate / n (Shares.interval).
# A controller that starts beside others (its campaign's, or another's on its nodes) dials
# only after JOIN_S, once each of them has read it and shrunk its share (no hang-up: they wait
# until their calls drop below it). A controller that stops, or whose lease expires, leaves
# its share to the others at their next read. Alone (or with no controller id: a run not
# holding the store), the caps are the whole caps, with no read on the dial path.
SHARE_POLL_S = 1.0  # the live controllers and their load are read this often
JOIN_S = 2 * SHARE_POLL_S + 0.5  # a newcomer's wait: every other one has read it by then


def split(cap: int, n: int, rank: int) -> int:
    """Controller `rank` (0-based, id order) of `n`'s part of `cap`: the parts add up to it."""
    return cap // n + (1 if rank < cap % n else 0)


@dataclass(frozen=True)
class Peers:
    """The campaign's live controllers (this one included, id order) and the others' load.
    Other campaigns' live controllers count on a node only: `elsewhere_on`, their open
    attempts per node; `users_on`, those of them that may dial it (calls on it, or it in their
    published snapshot's nodes). A node's max_channels caps every call on it."""
    ids: tuple[str, ...] = ()
    busy: int = 0  # the other controllers' open attempts
    busy_on: Mapping[str, int] = field(default_factory=dict)  # ... per node
    elsewhere_on: Mapping[str, int] = field(default_factory=dict)
    users_on: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[Row], me: str, campaign: str | None = None) -> Peers:
        """Rows (controller, node, n[, campaign]) of store.peer_load; a row of another
        campaign than `campaign` counts only on its node."""
        ids, on, elsewhere = {me}, Counter[str](), Counter[str]()
        users: dict[str, set[str]] = {}
        for r in rows:
            node = None if r["node"] is None else str(r["node"])
            if campaign is not None and r.get("campaign", campaign) != campaign:
                if node is not None:
                    elsewhere[node] += int(r["n"])
                    users.setdefault(node, set()).add(str(r["controller"]))
                continue
            ids.add(str(r["controller"]))
            if r["controller"] != me and node is not None:
                on[node] += int(r["n"])
        return cls(tuple(sorted(ids)), sum(on.values()), dict(on), dict(+elsewhere),
                   {k: frozenset(v) for k, v in users.items()})

    def limit(self, me: str, cap: int, busy: int) -> int:
        """This controller's calls allowed under `cap` with `busy` calls of the others."""
        if len(self.ids) <= 1:
            return cap
        return max(0, min(split(cap, len(self.ids), self.ids.index(me)), cap - busy))

    def node_limit(self, me: str, node: str, cap: int) -> int | None:
        """This controller's calls allowed on a node of `cap` channels: its share among every
        controller dialling through it (any campaign), never more than the cap less their open
        attempts; None: alone on it, the whole cap."""
        users = sorted({me, *self.ids, *self.users_on.get(node, frozenset())})
        if cap <= 0 or len(users) <= 1:
            return None
        busy = self.busy_on.get(node, 0) + self.elsewhere_on.get(node, 0)
        return max(0, min(split(cap, len(users), users.index(me)), cap - busy))

    def beside_others(self) -> bool:
        """Other live controllers share a cap with this one (its campaign's, or a node's)."""
        return len(self.ids) > 1 or any(self.users_on.values())


class Shares:
    """One run's view of its campaign's other controllers (`watch` keeps it fresh)."""

    def __init__(self, store: Any, campaign: str, nodes: Iterable[NodeState], clock: Clock,
                 off_loop: Callable[..., Any] | None = None) -> None:
        self.store, self.campaign, self.clock = store, campaign, clock
        self.nodes = list(nodes)
        self.me: str | None = getattr(store, "controller_id", None)
        self.off_loop = off_loop
        self.peers = Peers()
        self.dial_from = float("-inf")  # clock.monotonic() before which a newcomer waits
        self._read = False
        self._told = ""

    @property
    def alone(self) -> bool:
        return len(self.peers.ids) <= 1

    def max_concurrent(self, cap: int) -> int:
        """This controller's part of the campaign's cap now (the cap itself alone)."""
        if self.me is None:
            return cap
        if self.clock.monotonic() < self.dial_from:
            return 0
        room = self.peers.limit(self.me, cap, self.peers.busy)
        if self.nodes and all(ns.node.max_channels > 0 for ns in self.nodes) and \
                any(ns.shared_cap is not None for ns in self.nodes):
            # Its shares of the nodes may hold fewer: wait here, not re-plan as on a full node.
            room = min(room, sum(ns.limit() for ns in self.nodes))
        return room

    def interval(self, interval: float, cap: int | None = None) -> float:
        """This controller's pacing interval for the campaign's `interval` (1 / its calls per
        second): each of the n live controllers that may dial places a call every n intervals,
        so together they keep the rate set for the carrier (alone: the interval itself). With
        a campaign cap under n, only `cap` of them get a share of it: the rate is theirs."""
        if self.me is None:
            return interval
        n = max(1, len(self.peers.ids))
        return interval * (min(n, cap) if cap and cap > 0 else n)

    async def refresh(self) -> None:
        """Read the live controllers and their load; a store away keeps the last read."""
        load = getattr(self.store, "peer_load", None)
        if self.me is None or load is None:
            return
        try:
            rows = await (self.off_loop(load, self.campaign) if self.off_loop
                          else in_store_thread(load, self.campaign))
        except STORE_ERRORS as exc:  # the run itself pauses on the store; keep the shares
            log.debug("live controllers not read: %s", exc)
            return
        self.apply(Peers.from_rows(rows, self.me, self.campaign))

    def apply(self, peers: Peers) -> None:
        if not self._read and peers.beside_others():  # started beside others: let them see it
            self.dial_from = self.clock.monotonic() + JOIN_S
        self._read, self.peers = True, peers
        me = self.me or ""
        for ns in self.nodes:
            ns.shared_cap = peers.node_limit(me, ns.name, ns.node.max_channels)
        told = f"{len(peers.ids)} live controller(s)"
        if told != self._told:
            if self._told or not self.alone:
                log.info("campaign %s: %s share its caps", self.campaign, told)
            self._told = told

    async def watch(self, stop: asyncio.Event) -> None:
        """Read every SHARE_POLL_S until the run ends (cancelled)."""
        while not stop.is_set():
            await self.refresh()
            await self.clock.wait(stop, timeout=SHARE_POLL_S)
