"""The carrier breaker (ivr/campaign/carrier_guard.py): a trunk the carrier refuses (bad
credentials, a caller ID not on the contract, codecs, a trunk-wide 503) stops the run after
CARRIER_TRIP_AFTER refusals in a row on one node, instead of exhausting the whole list. Driven
on the fake PBX with the real dialer and run loop, on both backends."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ivr import app
from ivr.callflow.dispositions import carrier_refusal, unanswered_outcome
from ivr.campaign.carrier_guard import CARRIER_TRIP_AFTER, CarrierGuard
from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import InFlight
from ivr.campaign.state import Snapshot
from ivr.telephony.fake_pbx import answer, congestion, failed

from conftest import Backend
from test_cli_commands import invoke
from test_dialer import fiction, rig
from test_node_pool import pool
from test_run_loop import FAST, run_campaign


def statuses(store: Any) -> Counter[str]:
    return Counter(r["status"] for r in store.q(
        "SELECT status FROM campaign_contacts WHERE campaign = 'utest'"))


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and text in r.getMessage()]


# -- the dispositions -----------------------------------------------------------------------
def test_sip_504_cause_102_is_congestion_retried_not_a_final_failure() -> None:
    assert unanswered_outcome(0, 102) == "congestion"
    assert unanswered_outcome(1, 102) == "congestion"
    assert unanswered_outcome(0, 38) == "congestion"  # 500, as before


def test_sip_504_on_the_fake_pbx_is_stored_congestion_with_a_retry(backend: Backend) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with rig(backend, {fiction(1): failed(102)}, clock=ManualClock(),
                       delays=FAST) as r:
            await run_campaign(r)
            await r.settled()
            return r.calls()
    calls = asyncio.run(scenario())
    assert [(c["outcome"], c["hangup_cause"]) for c in calls] == [("congestion", "102")] * 2
    assert calls[0]["retry_at"] is not None  # max_attempts 2: retried once


def test_what_counts_as_a_carrier_refusal() -> None:
    for cause in (21, 58, 34, 38, 42, 102):
        assert carrier_refusal(0, cause) == carrier_refusal(1, cause)
        assert (carrier_refusal(0, cause) or "").startswith(f"cause {cause} (")
    assert carrier_refusal(8, None) == "Originate reason 8 (congestion)"
    assert carrier_refusal(8, 34) == carrier_refusal(0, 34)
    for reason, cause in ((5, 17), (3, 19), (5, 34), (0, 1), (0, 17), (0, None), (None, 16)):
        assert carrier_refusal(reason, cause) is None, (reason, cause)


# -- the guard alone ------------------------------------------------------------------------
def flight(node: str, cause: int | None = 21, reason: int = 0, answered: bool = False,
           failed: bool = True) -> InFlight:
    f = InFlight(1, "ivr-1", "+33199000001", node, answered=answered, failed=failed)
    f.cause, f.reason = cause, reason
    return f


def test_the_guard_counts_per_node_and_any_other_end_starts_again() -> None:
    trips: list[str] = []
    guard = CarrierGuard(trip_after=4)
    guard.arm(trips.append)
    for _ in range(3):
        guard.ended(flight("a"))
    guard.ended(flight("b", cause=None, reason=8))  # another node's count
    guard.ended(flight("a", cause=17, reason=5))    # busy: a callee, the trunk works
    assert (guard.streak("a"), guard.streak("b")) == (0, 1)
    for _ in range(3):
        guard.ended(flight("a", cause=34, reason=8))
    guard.answered("a")                            # answered: the trunk carries calls
    guard.ended(flight("a", cause=58))
    guard.ended(flight("a", cause=None, failed=False))  # an error (node fault, failsafe)
    assert guard.streak("a") == 0 and not trips
    for cause in (21, 21, 58, 102):
        guard.ended(flight("a", cause=cause))
    assert len(trips) == 1 and guard.why == trips[0]
    assert "node a" in trips[0] and "cause 21 (call rejected" in trips[0] and " x2" in trips[0]
    assert "cause 58" in trips[0] and "cause 102" in trips[0]
    assert "; 3 of these contacts are exhausted" in trips[0]  # 21, 21, 58: `failed`
    guard.ended(flight("a"))
    guard.ended(flight("b", cause=34))
    assert len(trips) == 1  # told once
    guard.arm(trips.append)  # a new run counts from zero
    assert guard.streak("a") == 0 and guard.why == ""


# -- runs on the fake PBX -------------------------------------------------------------------
def test_a_trunk_refusing_every_call_stops_the_run_and_keeps_the_list(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """30 contacts, every call cause 21 (a 401/403/407 trunk): ~20 attempts, then the run
    stops with stopped_by carrier, naming the node, the cause and what to check; the contacts
    not called stay pending. Before: all 30 called, each exhausted, the run `finished`."""
    numbers = [fiction(i) for i in range(30)]
    concurrent = 3

    async def scenario() -> tuple[Any, list[dict[str, Any]], Counter[str], Any]:
        async with rig(backend, {n: failed(21) for n in numbers}, clock=ManualClock(),
                       max_concurrent=concurrent) as r:
            report, _, state = await run_campaign(r)
            await r.settled()
            return report, r.calls(), statuses(r.store), state.last
    with caplog.at_level(logging.INFO):
        report, calls, status, last = asyncio.run(scenario())
    assert report.stopped_by == "carrier" and last.stopped_by == "carrier"
    assert CARRIER_TRIP_AFTER <= len(calls) < CARRIER_TRIP_AFTER + concurrent
    assert {(c["outcome"], c["hangup_cause"]) for c in calls} == {("failed", "21")}
    assert all(c["outcome"] is not None for c in calls)  # those in flight ended as usual
    assert status["pending"] == 30 - len(calls) and status["exhausted"] == len(calls)
    assert "node pbx" in report.why and "cause 21" in report.why
    for what in ("credentials", "caller ID registered with the carrier", "codecs"):
        assert what in report.why
    assert f"{CARRIER_TRIP_AFTER} of these contacts are exhausted" in report.why
    assert last.why == report.why
    assert len(errors(caplog, "carrier refused")) == 1


def test_trunk_wide_congestion_stops_the_run_before_max_attempts_burn_the_list(
        backend: Backend) -> None:
    """A trunk-wide 503 (Originate reason 8, cause 34): retried `congestion`, yet each retry
    refused too; the breaker stops the run instead of walking the list to max_attempts."""
    numbers = [fiction(i) for i in range(40)]

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with rig(backend, {n: congestion() for n in numbers}, clock=ManualClock(),
                       delays=FAST, max_concurrent=1) as r:
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls()
    report, calls = asyncio.run(scenario())
    assert report.stopped_by == "carrier" and len(calls) == CARRIER_TRIP_AFTER
    assert {c["outcome"] for c in calls} == {"congestion"} and "cause 34" in report.why
    assert "exhausted" not in report.why  # congestion is retried: nothing lost


def test_answered_calls_between_refusals_do_not_trip(backend: Backend) -> None:
    """Declines (603, cause 21) among answered calls: more than CARRIER_TRIP_AFTER of them in
    the run, never that many in a row; each stays `failed`, not redialled."""
    numbers = [fiction(i) for i in range(45)]
    callees = {n: answer(["1"]) if i % 3 == 0 else failed(21) for i, n in enumerate(numbers)}

    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        async with rig(backend, callees, max_concurrent=3) as r:
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls()
    report, calls = asyncio.run(scenario())
    outcomes = Counter(c["outcome"] for c in calls)
    assert report.stopped_by == "finished", report.why
    assert outcomes == {"failed": 30, "message_played": 15}
    assert all(c["retry_at"] is None for c in calls if c["outcome"] == "failed")


def test_one_node_of_a_pool_refused_by_its_carrier_stops_the_run(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """n1's trunk answers, n2's refuses every call (a caller ID not on its contract, 403): the
    run stops on n2's streak, whatever n1 does."""
    numbers = [fiction(i) for i in range(80)]

    async def scenario() -> tuple[Any, list[dict[str, Any]], Counter[str]]:
        async with pool(backend, {n: answer(["1"]) for n in numbers}, numbers, [0, 0],
                        max_concurrent=4, calls_per_second=50) as p:
            p.pbxs[1].callees = lambda number: failed(21)
            report = await p.run(timeout=60)
            await p.settled()
            return report, p.calls(), statuses(p.store)
    with caplog.at_level(logging.INFO):
        report, calls, status = asyncio.run(scenario())
    assert report.stopped_by == "carrier" and "node n2" in report.why
    by_node = Counter((c["node"], c["outcome"]) for c in calls)
    assert by_node[("n2", "failed")] >= CARRIER_TRIP_AFTER
    assert set(by_node) <= {("n1", "message_played"), ("n2", "failed")}
    assert len(calls) < len(numbers) and status["pending"] == len(numbers) - len(calls)
    assert len(errors(caplog, "carrier refused")) == 1


# -- the command line -----------------------------------------------------------------------
def final(stopped_by: str) -> Snapshot:
    at = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    return Snapshot("demo", at, at, 9, (), 0, 10, (("failed", 20),), 20, 0.0, "stopped",
                    stopped=True, finished=stopped_by == "finished", stopped_by=stopped_by,
                    why=f"why {stopped_by}")


@pytest.mark.parametrize("stopped_by, code", [("carrier", 1), ("finished", 0)])
def test_ivr_run_exits_non_zero_when_the_carrier_stopped_it(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch, stopped_by: str, code: int) -> None:
    """`ivr run`'s final line, then its status: a run the carrier stopped did not call the
    list, which a script running `ivr run` must be able to tell."""
    async def run_campaign(cfg: Any, store: Any, *, on_snapshot: Any, standby: bool) -> None:
        on_snapshot(final(stopped_by))
    monkeypatch.setattr(app, "run_campaign", run_campaign)
    got, out = invoke(cfg_file, "run")
    assert got == code and f"run {stopped_by}: 20 call(s) placed; why {stopped_by}" in out
