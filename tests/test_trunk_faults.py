"""Trunk-wide and PBX faults that looked like callees' answers: FastAGI unreachable (every
answered call takes the failsafe), a carrier unreachable (Originate Reason 0, no cause) or
failing every call (502, 402), a PBX stopping while calls ring, a network cut mid-message,
and a demo's retry delays carried into a real campaign."""
from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from collections import Counter
from typing import Any

import pytest

from ivr import config
from ivr.callflow.dispositions import carrier_refusal, unanswered_outcome
from ivr.campaign.clock import ManualClock
from ivr import config_checks
from ivr.compliance import preflight
from ivr.telephony import fake_callee
from ivr.telephony.fake_pbx import answer, failed, no_answer
from conftest import Backend
from test_dialer import contact, fiction, free_port, rig
from test_run_loop import run_campaign

FAST = {"busy": 0.2, "no_answer": 0.2, "congestion": 0.2}


def statuses(r: Any) -> Counter[str]:
    return Counter(x["status"] for x in r.store.q(
        "SELECT status FROM campaign_contacts WHERE campaign = 'utest'"))


# -- 1. FastAGI unreachable: every answered call takes the dialplan's failsafe ----------------
def test_failsafe_on_every_call_takes_the_node_out_and_stops_the_run(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    numbers = [fiction(i) for i in range(30)]

    async def scenario() -> Any:
        async with rig(backend, {n: answer(["1"]) for n in numbers}, clock=ManualClock(),
                       max_concurrent=3, delays=FAST) as r:
            r.dialer.agi_url = f"agi://127.0.0.1:{free_port()}"  # nothing listens there
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls(), statuses(r)
    with caplog.at_level(logging.INFO):
        report, calls, st = asyncio.run(scenario())
    assert report.stopped_by == "carrier"
    assert "took the dialplan's failsafe" in report.why and "agi://127.0.0.1:" in report.why
    assert "agi.allowed_peers" in report.why
    assert {(c["outcome"], c["stage"]) for c in calls} == {("error", "failsafe")}
    assert len(calls) <= 6  # 3 in a row, and those still in flight: not 60 silent calls
    assert all(c["retry_at"] is not None for c in calls)  # retried once fixed
    assert st == Counter({"pending": 30})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([e for e in errors if "failsafe" in e]) == 1, errors


class _Node:
    name = "pbx"

    def hold(self, seconds: float) -> None:
        pass


def test_failsafes_count_at_their_event_not_at_their_hangup() -> None:
    """The failsafe plays the legal mentions before the call's Hangup settles it: the node is
    out at the third answered call's failsafe event, not three playbacks later (at a high
    max_concurrent the run would dial on meanwhile); their later settling counts nothing."""
    from ivr.campaign.carrier_guard import CarrierGuard
    from ivr.campaign.node_guard import NodeGuard
    from ivr.campaign.nodes import InFlight
    carrier, trips = CarrierGuard(), []
    guard = NodeGuard(carrier, [_Node()])  # type: ignore[list-item]
    carrier.arm(trips.append)
    flights = [InFlight(i, f"ivr-x-{i}", fiction(i), "pbx", answered=True) for i in range(4)]
    for f in flights[:2]:
        guard.failsafe(f, "agi://127.0.0.1:4573")
    assert trips == []
    guard.failsafe(flights[2], "agi://127.0.0.1:4573")
    assert len(trips) == 1 and "took the dialplan's failsafe" in trips[0]
    for f in flights[:3]:  # the Hangups, after the legal mentions: not counted again
        guard.ended(f)
    assert guard._nodes["pbx"].failsafes == 3


def test_a_served_call_between_failsafes_starts_the_count_again(backend: Backend) -> None:
    numbers = [fiction(i) for i in range(8)]
    served = {numbers[2], numbers[5]}  # every third call reaches the IVR

    async def scenario() -> Any:
        async with rig(backend, {n: answer(["1"]) for n in numbers}, clock=ManualClock(),
                       max_concurrent=1, delays=FAST) as r:
            good = r.dialer.agi_url
            bad = f"agi://127.0.0.1:{free_port()}"
            place = r.dialer.place

            async def place_some_unserved(c: dict[str, Any]) -> Any:
                r.dialer.agi_url = good if c["number"] in served else bad
                return await place(c)
            r.dialer.place = place_some_unserved  # type: ignore[method-assign]
            for n in numbers:
                await r.dialer.dial(contact(r.store, n))
                await r.until(lambda: not r.dialer.by_call, timeout=15)
            return r.dialer.carrier.why, r.calls()
    why, calls = asyncio.run(scenario())
    assert why == ""  # never 3 failsafes in a row
    assert Counter(c["stage"] for c in calls)["failsafe"] == 6


# -- 2. the carrier unreachable, or failing every call ---------------------------------------
def test_a_failure_with_no_cause_is_retried_and_counted() -> None:
    for reason, cause in ((0, None), (1, None), (0, 0), (None, None)):
        assert unanswered_outcome(reason, cause) == "congestion", (reason, cause)
        assert (carrier_refusal(reason, cause) or "").startswith("Originate failed with no "
                                                                  "cause"), (reason, cause)
    for cause in (27, 29, 127):  # SIP 502, 501, 402: the carrier's, retried
        assert unanswered_outcome(1, cause) == "congestion", cause
    for cause in (27, 29, 127):
        assert (carrier_refusal(1, cause) or "").startswith(f"cause {cause} (")
    assert unanswered_outcome(1, 1) == "failed" and carrier_refusal(1, 1) is None  # 404
    assert unanswered_outcome(3, None) == "no_answer" and carrier_refusal(3, None) is None


_play = fake_callee.Player.play


async def _unreachable(self: Any, call: Any) -> None:
    """Asterisk with the carrier's contact Unavailable: the Originate fails before any channel
    exists (Reason 0, OriginateResponse Failure, no Hangup event)."""
    if call.callee.kind == "failed" and call.callee.cause == 3:
        self._originate_response(call, False, 0)
        call.ended.update({call.channel_id, call.other_id})
        self.on_ended(call)
        return
    await _play(self, call)


@pytest.mark.parametrize("cause", [3, 27, 127])
def test_a_carrier_failing_every_call_mid_run_trips_the_breaker(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, cause: int) -> None:
    monkeypatch.setattr(fake_callee.Player, "play", _unreachable)  # cause 3: Reason 0 alone
    numbers = [fiction(i) for i in range(60)]
    seq = itertools.count()

    def callee(n: str) -> Any:  # the first 5 answered, then the carrier fails every call
        return answer(["1"]) if next(seq) < 5 else failed(cause)

    async def scenario() -> Any:
        async with rig(backend, callee, numbers=numbers, clock=ManualClock(),
                       max_concurrent=3 if cause == 3 else 1, delays=FAST) as r:
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, r.calls(), statuses(r)
    report, calls, st = asyncio.run(scenario())
    assert report.stopped_by == "carrier", report.why
    assert st["done"] == 5 and st["pending"] >= 35, st
    if cause == 3:  # no cause at all: the node never reached the carrier
        assert "Originate failed with no cause" in report.why
        assert "pjsip show contacts" in report.why
    assert st["exhausted"] == 0, st  # the carrier's failure never spends the callee's list
    assert all(c["retry_at"] is not None for c in calls if c["answered_at"] is None)


def test_cause_1_on_a_node_that_answers_stays_a_final_failure_not_a_trip(
        backend: Backend) -> None:
    numbers = [fiction(i) for i in range(30)]

    def callee(n: str) -> Any:  # every other number does not exist (404)
        return failed(1) if int(n[-2:]) % 2 else answer(["1"])

    async def scenario() -> Any:
        async with rig(backend, callee, numbers=numbers, clock=ManualClock(), max_concurrent=1,
                       delays=FAST) as r:
            report, _, _ = await run_campaign(r)
            await r.settled()
            return report, statuses(r)
    report, st = asyncio.run(scenario())
    assert report.stopped_by != "carrier"
    assert st == Counter({"done": 15, "exhausted": 15})


# -- 3. the PBX stops while calls ring --------------------------------------------------------
def test_ringing_calls_torn_down_by_a_pbx_shutdown_are_error_retried(backend: Backend) -> None:
    numbers = [fiction(30 + i) for i in range(3)]

    async def scenario() -> Any:
        async with rig(backend, {n: no_answer() for n in numbers}, ring_timeout_s=20) as r:
            for n in numbers:
                await r.dialer.dial(contact(r.store, n))
            await r.until(lambda: len(r.pbx.live) == 3)
            await r.pbx.shutdown()
            await r.until(lambda: all(c["outcome"] is not None for c in r.calls()), timeout=15)
            return r.calls(), [contact(r.store, n) for n in numbers], r.dialer.carrier
    calls, people, carrier = asyncio.run(scenario())
    assert [(c["outcome"], c["stage"]) for c in calls] == [("error", "pbx-ringing")] * 3
    assert all(c["retry_at"] is not None for c in calls)
    assert [p["status"] for p in people] == ["pending"] * 3
    assert carrier.streak("pbx") == 0  # the PBX's going down: no carrier count


# -- 4. the network drops the call during the message ---------------------------------------
@pytest.mark.parametrize("cause", [41, 38, 16])
def test_a_network_cut_during_the_message_is_error_retried(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, cause: int) -> None:
    def hangs_up(self: Any, call: Any) -> None:  # a BYE with Reason: Q.850;cause=<cause>
        if call.cause is None:
            call.cause = cause
        call.gone.set()
        self.end(call, ((call.other_id, cause),))
    monkeypatch.setattr(fake_callee.Player, "callee_hangs_up", hangs_up)
    n = fiction(40)

    async def scenario() -> Any:
        async with rig(backend, {n: answer(["1"], hangup_at=1)}) as r:  # 1, then cut in message
            await r.dialer.dial(contact(r.store, n))
            await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=15)
            return r.calls()[0], contact(r.store, n)
    call, person = asyncio.run(scenario())
    assert call["hangup_cause"] == str(cause)
    if cause == 16:  # the callee hung up: their own partial message, final
        assert (call["outcome"], call["stage"], person["status"]) == \
            ("message_partial", "message", "done")
    else:
        assert (call["outcome"], call["stage"], person["status"]) == \
            ("error", "pbx-message", "pending")
        assert call["retry_at"] is not None


# -- 5. a demo's retry delays in a real campaign ----------------------------------------------
def test_demo_retry_delays_are_warned_in_a_real_campaign(
        tmp_path: Any) -> None:
    shipped = open("config.yaml", encoding="utf-8").read()
    assert "demo_any_hour: true" in shipped
    shutil.copytree("prompts", tmp_path / "prompts")  # its prompts' text files
    real = tmp_path / "config.yaml"
    real.write_text(shipped.replace("demo_any_hour: true", "demo_any_hour: false"),
                    encoding="utf-8")
    cfg = config.load(str(real))
    said = config_checks.demo_retry_delays(cfg)
    assert [s.split(" is ")[0] for s in said] == [
        "retry.delay_s.busy", "retry.delay_s.no_answer", "retry.delay_s.congestion"]
    assert "at least 600" in said[0]
    # counted among `ivr check`'s and `ivr run`'s warnings, one per key
    warned = [v for v in preflight.preflight(cfg) if v.code == "retry_delay_demo"]
    assert [v.message for v in warned] == said and {v.severity for v in warned} == {"warning"}
    demo = config.load("config.yaml")
    assert config_checks.demo_retry_delays(demo) == []  # the demo itself: silent
    assert not [v for v in preflight.preflight(demo) if v.code == "retry_delay_demo"]
