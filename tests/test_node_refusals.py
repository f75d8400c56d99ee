"""The node guard (ivr/campaign/node_guard.py): an Asterisk whose AMI user lacks the originate
write class ("Permission denied") or whose dialplan lacks ivr-outbound ("Extension does not
exist.") refuses every Originate; one whose prompts it cannot read plays silence to every
callee. Found on a real admin Asterisk: before, the refusals were stored `failed` (final: 300
contacts exhausted, `ivr run` exiting 0) and reset the carrier breaker; the silent calls were
retried max_attempts times each. Now the node is taken out, the last one out stops the run
(stopped_by carrier: exit status 4), nothing is charged for a refusal. Fake PBX, both backends.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections import Counter
from typing import Any

import pytest

from ivr.campaign.carrier_guard import CarrierGuard
from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.node_guard import (NUMBER_CHARGED_AFTER, OUT_HOLD_S, REFUSED_OUT_AFTER,
                                     REFUSED_STAGE, UNPLAYABLE_OUT_AFTER, NodeGuard)
from ivr.campaign.nodes import InFlight, NodeState
from ivr.telephony.fake_pbx import answer, refuse

from conftest import Backend
from test_carrier_guard import errors, statuses
from test_dialer import dial_all, fiction, rig
from test_node_pool import pool
from test_run_loop import run_campaign

DENIED = "Permission denied"
NO_EXTEN = "Extension does not exist."
RETRY_SOON = {"busy": 5.0, "no_answer": 5.0, "congestion": 5.0}  # a run not stopped ends soon


def refusing(message: str) -> Any:
    return lambda number: refuse(message)


def flight_refused_by_carrier() -> InFlight:
    f = InFlight(99, "c99", fiction(99), "pbx", failed=True)
    f.cause, f.reason = 21, 0  # a 403 from the carrier: one count of its breaker
    return f


# -- runs on the fake PBX -------------------------------------------------------------------
@pytest.mark.parametrize("message, what", [
    (DENIED, "the AMI user of node pbx lacks the originate write class"),
    (NO_EXTEN, "context ivr-outbound (extension s) not found on node pbx: check the #include")])
def test_a_node_refusing_every_originate_stops_the_run_and_charges_nobody(
        backend: Backend, caplog: pytest.LogCaptureFixture, message: str, what: str) -> None:
    """30 contacts, every Originate refused: the run stops after REFUSED_OUT_AFTER (stopped_by
    carrier, which `ivr run` exits 4 on), one ERROR line naming Asterisk's message and what to
    check; no attempt is left (each withdrawn), every contact pending with its attempts.
    Before: all 30 `failed`, exhausted, the run `finished`."""
    numbers = [fiction(i) for i in range(30)]

    async def scenario() -> tuple[Any, list[dict[str, Any]], Counter[str], Any]:
        async with rig(backend, refusing(message), numbers=numbers, clock=ManualClock(),
                       max_concurrent=3) as r:
            report, _, state = await run_campaign(r)
            await r.settled()
            return report, r.calls(), statuses(r.store), len(r.pbx.originates)
    with caplog.at_level(logging.INFO):
        report, calls, status, sent = asyncio.run(scenario())
    assert report.stopped_by == "carrier", report.why
    assert REFUSED_OUT_AFTER <= sent < REFUSED_OUT_AFTER + 3
    assert calls == [] and status == Counter({"pending": 30})
    assert f"node pbx refused {sent} Originates in a row ({message} x{sent})" in report.why
    assert what in report.why and "those contacts keep their attempts" in report.why
    said = errors(caplog, "refused")
    assert len(said) == 1 and said[0] == report.why


def test_refusals_do_not_reset_the_carrier_breaker(backend: Backend) -> None:
    """A refused Originate is the node's, not the carrier's: it neither counts for the
    breaker nor starts its count again (before: it reset it, as an unanswered end)."""
    async def scenario() -> tuple[int, int]:
        async with rig(backend, refusing(DENIED), numbers=[fiction(1)],
                       clock=ManualClock()) as r:
            carrier = r.dialer.carrier
            carrier.arm(lambda why: None)
            carrier.ended(flight_refused_by_carrier())
            before = carrier.streak("pbx")
            await dial_all(r, [fiction(1)])
            await r.settled()
            return before, carrier.streak("pbx")
    before, after = asyncio.run(scenario())
    assert before == after == 1


def test_a_pool_node_refusing_everything_is_taken_out_and_the_others_dial_on(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """n1's AMI user lacks originate, n2 works: n1 is out after REFUSED_OUT_AFTER (one ERROR
    line), n2 places every call, the run finishes with every contact called once."""
    numbers = [fiction(i) for i in range(24)]

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with pool(backend, {n: answer(["1"]) for n in numbers}, numbers, [0, 0],
                        max_concurrent=4, calls_per_second=50) as p:
            p.pbxs[0].callees = refusing(DENIED)
            report = await p.run(timeout=60)
            await p.settled()
            return report, p.calls()
    with caplog.at_level(logging.INFO):
        report, calls = asyncio.run(scenario())
    assert report.stopped_by == "finished", report.why
    assert Counter((c["node"], c["outcome"]) for c in calls) == {("n2", "message_played"): 24}
    said = errors(caplog, "node n1 refused")
    assert len(said) == 1 and "the other nodes dial on" in said[0], said
    assert f"for {OUT_HOLD_S:.0f} s, then tried again" in said[0]
    # Each refusal names its channel: a withdrawn attempt's id may be given again (SQLite)
    refused = [r.getMessage() for r in caplog.records if "Originate for call" in r.getMessage()]
    assert refused and all(re.search(r"call \d+ \(ivr-[0-9a-f]+-\d+-[0-9a-f]+\) refused", m)
                           for m in refused), refused


def test_every_node_of_a_pool_refusing_stops_the_run(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(30)]

    async def scenario() -> tuple[Any, list[dict[str, Any]], Counter[str]]:
        async with pool(backend, refusing(DENIED), numbers, [0, 0], max_concurrent=4,
                        calls_per_second=50) as p:
            p.pbxs[1].callees = refusing(NO_EXTEN)
            report = await p.run(timeout=60)
            await p.settled()
            return report, p.calls(), statuses(p.store)
    report, calls, status = asyncio.run(scenario())
    assert report.stopped_by == "carrier", report.why
    assert report.why.startswith("every node is out (node n")
    assert "write class" in report.why and "#include" in report.why
    assert calls == [] and status == Counter({"pending": 30})


def test_prompts_asterisk_cannot_read_stop_the_run(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """Every answered callee would hear silence: after UNPLAYABLE_OUT_AFTER such calls in a
    row the run stops, naming the prompt and pbx.sounds_dir; those calls are `error`, retried,
    the others not called. Before: each contact called max_attempts times, the run `finished`."""
    numbers = [fiction(i) for i in range(12)]
    silent = dataclasses.replace(answer(["1"]), unreadable=True)

    async def scenario() -> tuple[Any, list[dict[str, Any]], Counter[str]]:
        async with rig(backend, lambda n: silent, numbers=numbers, clock=Clock(),
                       max_concurrent=1, delays=RETRY_SOON) as r:
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls(), statuses(r.store)
    with caplog.at_level(logging.INFO):
        report, calls, status = asyncio.run(scenario())
    assert report.stopped_by == "carrier", report.why
    assert len(calls) == UNPLAYABLE_OUT_AFTER
    assert all(c["outcome"] == "error" and c["retry_at"] for c in calls)
    assert status == Counter({"pending": 12})
    assert report.why.startswith("node pbx: Asterisk could not play ivr/")
    for what in (f"on {UNPLAYABLE_OUT_AFTER} answered calls in a row", "pbx.sounds_dir",
                 "astdatadir", "/usr/share/asterisk/sounds", "readable by Asterisk's user"):
        assert what in report.why
    assert len(errors(caplog, "answered calls in a row")) == 1


# -- the guard alone ------------------------------------------------------------------------
class _Node:
    def __init__(self, name: str) -> None:
        self.name, self.max_channels, self.up = name, 0, True


def guard(*names: str) -> tuple[NodeGuard, list[str], dict[str, NodeState]]:
    clock = ManualClock()
    states = {n: NodeState(_Node(n), clock) for n in names}  # type: ignore[arg-type]
    carrier = CarrierGuard()
    g = NodeGuard(carrier, list(states.values()), "/srv/sounds")
    trips: list[str] = []
    carrier.arm(trips.append)
    return g, trips, states


def answered(node: str, sound: str = "") -> InFlight:
    f = InFlight(1, "c", fiction(1), node, answered=True)
    if sound:
        f.prompt_failed = sound  # type: ignore[attr-defined]
    return f


def test_an_accepted_originate_or_a_played_prompt_starts_the_count_again() -> None:
    g, trips, states = guard("a")
    for i in range(REFUSED_OUT_AFTER - 1):
        assert not g.refused(states["a"], f"Originate refused: {DENIED}", fiction(i))
    g.accepted("a")
    for i in range(REFUSED_OUT_AFTER - 1):
        g.refused(states["a"], DENIED, fiction(10 + i))
    for _ in range(UNPLAYABLE_OUT_AFTER - 1):
        g.ended(answered("a", "ivr/x/intro"))
    g.ended(answered("a"))
    for _ in range(UNPLAYABLE_OUT_AFTER - 1):
        g.ended(answered("a", "ivr/x/intro"))
    assert not trips and states["a"].ready()
    g.refused(states["a"], DENIED, fiction(20))
    assert len(trips) == 1 and "Permission denied x5" in trips[0]


def test_a_number_refused_again_and_again_is_charged_so_no_list_loops() -> None:
    """A refusal the node keeps for one number while it accepts the others' would withdraw
    the same attempt for ever: its NUMBER_CHARGED_AFTER-th refusal is charged (`error`)."""
    g, trips, states = guard("a")
    charged = []
    for _ in range(NUMBER_CHARGED_AFTER + 1):
        charged.append(g.refused(states["a"], DENIED, fiction(1)))
        g.accepted("a")
    assert charged == [False] * (NUMBER_CHARGED_AFTER - 1) + [True, True] and not trips
    assert REFUSED_STAGE == "originate-refused"


def test_a_node_out_comes_back_when_an_originate_is_accepted_again() -> None:
    g, trips, states = guard("a", "b")
    for i in range(REFUSED_OUT_AFTER):
        g.refused(states["a"], DENIED, fiction(i))
    assert not trips and not states["a"].ready() and states["b"].ready()
    states["a"].clock.advance(OUT_HOLD_S + 1)  # type: ignore[attr-defined]
    assert states["a"].ready()
    g.accepted("a")  # manager.conf fixed meanwhile
    for i in range(REFUSED_OUT_AFTER):
        g.refused(states["b"], NO_EXTEN, fiction(i))
    assert not trips  # a is back in: b alone is out
    for _ in range(UNPLAYABLE_OUT_AFTER):
        g.ended(answered("a", "ivr/x/intro"))
    assert len(trips) == 1 and trips[0].startswith("every node is out (node a: Asterisk")
    g.accepted("a")  # out for the run: its callees would hear silence
    assert not states["a"].ready()
