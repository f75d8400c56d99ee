"""The node guard: an Asterisk that refuses every Originate, or cannot play the prompts, is taken
out; once every node is, the run stops (as the carrier breaker does: exit status 4).

All three are the node's configuration, never a callee's answer:
- An Originate refused ("Permission denied": the AMI user lacks the originate write class;
  "Extension does not exist.": the dialplan's #include is missing) dialled nobody. Its attempt
  is withdrawn (the contact keeps its attempts and is due again); before, it was stored
  `failed`, final, and the whole list was exhausted in seconds with `ivr run` exiting 0.
  REFUSED_OUT_AFTER in a row on a node take it out for OUT_HOLD_S (then one call tries it
  again: a fixed manager.conf is seen without a restart); any accepted Originate there
  starts the count again. A number refused NUMBER_CHARGED_AFTER times in the run is charged
  an attempt (`error`, retried later), so no list can loop on a refusal for good.
- Answered calls whose prompt Asterisk could not play (the IVR marks the flight, agi_ivr.py):
  the person heard silence. UNPLAYABLE_OUT_AFTER in a row on a node take it out for the rest
  of the run (each try would be another person hearing silence); any other answered call
  there starts the count again. Those calls stay `error`, retried, as before.
- Answered calls that took the dialplan's failsafe (IvrFailsafe: the PBX could not reach the
  FastAGI server, or the controller would not serve it: agi.host/port, agi.allowed_peers, a
  firewall) heard nothing of the message. FAILSAFE_OUT_AFTER in a row on a node take it out
  for the rest of the run; any answered call there that reached the IVR starts the count
  again. Those calls stay `error` (stage failsafe), retried, as the unplayable ones. Before,
  each answer reset the carrier breaker: every callee got max_attempts silent calls and the
  run ended 'all done' with exit status 0 and no ERROR line.
A node that goes out while others are in: one ERROR line, the others dial on. The last one
out stops the run with one line naming each node's cause and what to check, through the
carrier breaker's stop (carrier_guard.CarrierGuard.trip): same stop, same exit status 4, so a
service manager does not restart into the same misconfiguration.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ivr.campaign.carrier_guard import CarrierGuard
from ivr.campaign.nodes import InFlight, NodeState
from ivr.telephony.contract import OUTBOUND_CONTEXT, OUTBOUND_EXTEN

if TYPE_CHECKING:  # the dialer settles through here; imported for its type only
    from ivr.campaign.dialer import Dialer

log = logging.getLogger(__name__)

REFUSED_OUT_AFTER = 5      # Originates refused in a row on a node: it is out
UNPLAYABLE_OUT_AFTER = 3   # answered calls in a row whose prompt could not be played
FAILSAFE_OUT_AFTER = 3     # answered calls in a row that took the dialplan's failsafe
OUT_HOLD_S = 60.0          # a node out for refusals is tried again after this (one call)
NUMBER_CHARGED_AFTER = 3   # a number refused this often in the run is charged an attempt
REFUSED_STAGE = "originate-refused"  # the stage of such a charged attempt (`error`)
PREFIX = "Originate refused: "  # what ami.py puts before Asterisk's own message


@dataclass
class _Node:
    refused: list[str] = field(default_factory=list)     # Asterisk's messages, in a row
    unplayable: list[str] = field(default_factory=list)  # the prompts it could not play
    failsafes: int = 0                  # answered calls in a row that took the failsafe
    out: tuple[str, str, str] | None = None  # while out: what it did, what to check, its cost
    out_for_good: bool = False          # out for the run (prompts): no Originate brings it in


def advice(message: str, node: str) -> str:
    """What to check for Asterisk's refusal `message` on `node`."""
    said = message.lower()
    if "permission denied" in said:
        return (f"the AMI user of node {node} lacks the originate write class: add originate "
                "to its write= line in manager.conf, then run `manager reload`")
    if "extension does not exist" in said:
        return (f"context {OUTBOUND_CONTEXT} (extension {OUTBOUND_EXTEN}) not found on node "
                f"{node}: check the #include of ivr/ivr-outbound.conf in extensions.conf, "
                "then run `dialplan reload`")
    return (f"check node {node}'s Asterisk: its AMI user's write classes (originate) and its "
            f"dialplan (context {OUTBOUND_CONTEXT})")


class NodeGuard:
    """Counts each node's refusals and unplayable prompts; takes a node out, stops the run
    once none is left (carrier.trip). Reset with the carrier breaker at each run (arm)."""

    def __init__(self, carrier: CarrierGuard, states: Sequence[NodeState],
                 sounds_dir: str = "") -> None:
        self.carrier = carrier
        self.states = {ns.name: ns for ns in states}
        self.sounds_dir = sounds_dir
        self._nodes: dict[str, _Node] = {}
        self._numbers: Counter[str] = Counter()  # refusals per number in this run
        self._failsafed: set[str] = set()  # channel ids whose failsafe was counted
        carrier.on_arm.append(self.reset)

    def reset(self) -> None:
        self._nodes.clear()
        self._numbers.clear()
        self._failsafed.clear()

    def failsafe(self, flight: InFlight, agi_url: str) -> None:
        """The call took the dialplan's failsafe (node_events.py): counted now, not when it
        settles at its Hangup after the legal mentions, so that a FastAGI server the PBX
        cannot reach takes the node out after 3 answered calls, not 3 playbacks later."""
        self._failsafed.add(flight.channel_id)  # ended() counts it no more
        if flight.answered and not self.carrier.stopping():
            self._failsafe(flight.node, self._node(flight.node), agi_url)

    def _node(self, name: str) -> _Node:
        return self._nodes.setdefault(name, _Node())

    def accepted(self, node: str) -> None:
        """An Originate was accepted there: its AMI user and dialplan work."""
        n = self._nodes.get(node)
        if n is not None and n.refused:
            n.refused.clear()
            if n.out and not n.out_for_good:
                log.info("node %s accepts Originates again: back in", node)
                n.out = None

    def refused(self, ns: NodeState, message: str, number: str) -> bool:
        """The node refused an Originate (not a shutdown): True when the attempt is charged
        (the number refused again and again, and this refusal took no node out), else it
        is withdrawn."""
        self._numbers[number] += 1
        if self.carrier.stopping():
            return False
        n = self._node(ns.name)
        n.refused.append(message.removeprefix(PREFIX))
        if len(n.refused) >= REFUSED_OUT_AFTER:
            self._out(ns.name, n, self._refusals(ns.name, n), OUT_HOLD_S)
            return False
        return self._numbers[number] >= NUMBER_CHARGED_AFTER

    def ended(self, flight: InFlight) -> None:
        """An attempt has its outcome: an answered one tells whether its prompts played."""
        failsafed = flight.channel_id in self._failsafed
        self._failsafed.discard(flight.channel_id)
        if not flight.answered or self.carrier.stopping() or failsafed:
            return  # a failsafe was counted at its event (failsafe())
        n = self._node(flight.node)
        n.failsafes = 0  # this one reached the IVR
        sound = flight.prompt_failed  # agi_ivr.py marks it
        if not sound:
            n.unplayable.clear()
            return
        n.unplayable.append(sound)
        if len(n.unplayable) >= UNPLAYABLE_OUT_AFTER:
            n.out_for_good = True
            self._out(flight.node, n, self._unplayable(flight.node, n), math.inf)

    def _failsafe(self, name: str, n: _Node, agi_url: str) -> None:
        n.failsafes += 1
        if n.failsafes >= FAILSAFE_OUT_AFTER and not n.out_for_good:
            n.out_for_good = True
            self._out(name, n, (
                f"node {name}: {n.failsafes} answered calls in a row took the dialplan's "
                "failsafe (they heard the legal mentions only)",
                f"the PBX cannot reach the FastAGI server {agi_url}: check agi.host and "
                "agi.port (the address the PBX dials), agi.allowed_peers (the PBX's address as "
                "the controller sees it) and any firewall or NAT between them",
                "those calls are `error`, retried"), math.inf)

    def _out(self, name: str, n: _Node, said: tuple[str, str, str], hold_s: float) -> None:
        """Take the node out; the last one out stops the run."""
        first, n.out = n.out is None, said
        ns = self.states.get(name)
        if ns is not None:
            ns.hold(hold_s)
        outs = [o for o in (self._node(other).out for other in self.states) if o is not None]
        if len(outs) == len(self.states):
            causes = outs[0][0] if len(outs) == 1 else \
                "every node is out (" + "; ".join(o[0] for o in outs) + ")"
            rest = [o[1] for o in outs] + list(dict.fromkeys(o[2] for o in outs))
            self.carrier.trip(f"{causes}: no new calls; " + "; ".join(rest))
        elif first:
            again = "for the rest of the run (restart ivr run once fixed)" \
                if math.isinf(hold_s) else f"for {OUT_HOLD_S:.0f} s, then tried again"
            log.error("%s: no calls on node %s %s, the other nodes dial on; %s; %s", said[0],
                      name, again, said[1], said[2])

    @staticmethod
    def _refusals(name: str, n: _Node) -> tuple[str, str, str]:
        seen = Counter(n.refused)
        said = ", ".join(f"{m} x{k}" for m, k in seen.most_common())
        return (f"node {name} refused {len(n.refused)} Originates in a row ({said})",
                advice(seen.most_common(1)[0][0], name),
                "nothing was dialled: those contacts keep their attempts")

    def _unplayable(self, name: str, n: _Node) -> tuple[str, str, str]:
        where = f"pbx.sounds_dir ({self.sounds_dir})" if self.sounds_dir else "pbx.sounds_dir"
        return (f"node {name}: Asterisk could not play {n.unplayable[-1]} on "
                f"{len(n.unplayable)} answered calls in a row (they heard silence)",
                f"{where} must be the sounds folder under Asterisk's astdatadir (Debian: "
                "/usr/share/asterisk/sounds), with the prompts and their folders readable by "
                "Asterisk's user", "those calls are `error`, retried")


def settle_refused(dialer: Dialer, flight: InFlight, charged: bool) -> None:
    """A refused Originate's attempt: nothing rang, so it is withdrawn (its row removed: the
    contact keeps its attempts and is due again, no outcome, no webhook), or, `charged`,
    `error` retried (stage REFUSED_STAGE). Neither is a carrier's answer: no breaker count."""
    if dialer.by_call.get(flight.call_id) is not flight:  # settled meanwhile
        return
    dialer._drop(flight.call_id)
    call_id = flight.call_id
    if charged:
        now = dialer.clock.now()
        retry = dialer.retry_at({"attempt": flight.attempt}, "error")
        dialer.writer.write(lambda: dialer.store.finish_unanswered(
            call_id, "error", None, now, retry, stage=REFUSED_STAGE))
        for hook in dialer.on_settled:
            hook(call_id)
    else:
        dialer.writer.write(lambda: dialer.store.withdraw_attempt(call_id))
    dialer.changed.set()
