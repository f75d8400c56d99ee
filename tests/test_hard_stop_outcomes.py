"""Calls the run itself hangs up (the console's Hard stop, the drain timeout, a second Ctrl-C:
Dialer.hangup_all) are not the callee's hang-ups. A consent cut during the message, an intro
cut before any choice and a call still ringing end `error` (stage `hard-stop…`), retried so the
person hears the message; a choice already made (opposition, refusal) is kept. On the fake PBX
over real AMI and FastAGI, the real IvrHandler, dialer and store of each backend."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from ivr.callflow import outcomes
from ivr.campaign import planning
from ivr.telephony.fake_pbx import answer, no_answer

from conftest import Backend
from test_dialer import Rig, contact, dial_all, fiction, rig
from test_run_loop import run_campaign

CONSENT, OPTOUT, REFUSAL, INTRO, RINGING = (fiction(i) for i in range(30, 35))


def in_prompt(r: Rig, number: str, prompt: str) -> bool:
    """The callee's last AGI command plays `prompt` (ivr/<campaign>/<prompt>-<sha>)."""
    calls = [c for c in r.pbx.calls.values() if c.number == number]
    return bool(calls and calls[-1].agi and f"/{prompt}-" in calls[-1].agi[-1])


def by_number(r: Rig) -> dict[str, dict[str, Any]]:
    return {c["number"]: c for c in r.calls()}


def due_later(r: Rig) -> set[str]:
    """Who the plan dials once every retry delay has passed."""
    later = r.clock.now() + timedelta(seconds=1000)
    return {c["number"] for c in planning.plan(r.cfg, r.store, later).due}


def test_a_hard_stop_retries_who_it_cut_and_keeps_the_callees_word(backend: Backend) -> None:
    callees = {CONSENT: answer(["1"], prompt_s=2),    # pressed 1: the message is playing
               OPTOUT: answer(["9"], prompt_s=2),     # pressed 9: its confirmation is playing
               REFUSAL: answer(["2"], prompt_s=2),    # pressed 2: the legal part is playing
               INTRO: answer([], prompt_s=8),         # still listening to the intro
               RINGING: no_answer()}                  # still ringing

    async def scenario() -> tuple[dict[str, dict[str, Any]], dict[str, str], set[str],
                                  list[tuple[str, str]]]:
        async with rig(backend, callees, ring_timeout_s=30) as r:
            await dial_all(r, list(callees))
            await r.until(lambda: in_prompt(r, CONSENT, "message") and
                          in_prompt(r, OPTOUT, "optout_confirm") and
                          in_prompt(r, REFUSAL, "legal") and in_prompt(r, INTRO, "intro"))
            await r.dialer.hangup_all()
            await r.until(lambda: all(c["outcome"] for c in r.calls()) and
                          not r.dialer.in_flight(), timeout=15)
            status = {n: contact(r.store, n)["status"] for n in callees}
            consents = r.store.q("SELECT number, kind FROM consents ORDER BY number")
            return (by_number(r), status, due_later(r),
                    [(c["number"], c["kind"]) for c in consents])
    calls, status, due, consents = asyncio.run(scenario())
    for number in (CONSENT, INTRO, RINGING):  # our hang-up, not theirs: retried
        call = calls[number]
        assert call["outcome"] == "error", (number, call)
        assert call["stage"].startswith("hard-stop"), (number, call)
        assert call["retry_at"] is not None and status[number] == "pending", (number, call)
    assert calls[CONSENT]["stage"] == "hard-stop-message"
    assert calls[RINGING]["stage"] == "hard-stop"
    assert due == {CONSENT, INTRO, RINGING}
    # The callee's own word stands, with the cut in its stage as after a PBX fault.
    assert (calls[OPTOUT]["outcome"], status[OPTOUT]) == ("opted_out", "opted_out")
    assert (calls[REFUSAL]["outcome"], status[REFUSAL]) == ("declined_partial", "done")
    assert calls[OPTOUT]["retry_at"] is None and calls[REFUSAL]["retry_at"] is None
    # The consent given before the cut stays recorded (proof of consent), as do the others.
    assert sorted(consents) == sorted([(CONSENT, "consent"), (OPTOUT, "optout"),
                                       (REFUSAL, "refusal")])


def test_an_answered_call_cut_before_its_ivr_began_is_a_hard_stop_error(
        backend: Backend) -> None:
    """Hung up during AMD: no IVR session ever reports; the AMI Hangup settles it."""
    number = fiction(40)

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {number: answer(["1"], amd_s=20)}) as r:
            await dial_all(r, [number])
            await r.until(lambda: any(f.answered for f in r.dialer.inflight.values()))
            await r.dialer.hangup_all()
            await r.until(lambda: bool(r.calls()[0]["outcome"]), timeout=15)
            return r.calls()[0]
    call = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "hard-stop")
    assert call["retry_at"] is not None


def test_a_call_the_deadline_watch_settles_after_a_hard_stop_names_the_hard_stop(
        backend: Backend) -> None:
    """The hang-up is lost (the node refuses it) and the call never reports: the deadline
    watch settles it, as the run's cut, not as a plain overdue call."""
    number = fiction(42)

    async def scenario() -> dict[str, Any]:
        async with rig(backend, {number: answer(["1"], amd_s=20)}) as r:
            await dial_all(r, [number])
            await r.until(lambda: any(f.answered for f in r.dialer.inflight.values()))
            node = r.ctl.node
            real = node.hangup

            async def lost(channel_id: str) -> None:
                raise RuntimeError("no answer to the Hangup")
            node.hangup = lost  # type: ignore[method-assign]
            await r.dialer.hangup_all()
            node.hangup = real  # type: ignore[method-assign]
            for ns in r.dialer.nodes.values():  # past its deadline now
                for flight in ns.calls.values():
                    flight.deadline = 0.0
                ns.earliest_deadline = 0.0
            await r.until(lambda: bool(r.calls()[0]["outcome"]), timeout=15)
            return r.calls()[0]
    call = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "hard-stop")
    assert call["retry_at"] is not None


def test_the_drain_timeout_hangs_up_a_consent_which_is_then_retried(backend: Backend) -> None:
    """The run's own path: a Stop, the drain timeout passes, the run hangs the call up."""
    number = fiction(41)

    async def scenario() -> tuple[dict[str, Any], str]:
        async with rig(backend, {number: answer(["1"], prompt_s=4)},
                       drain_timeout_s=2) as r:
            stop = asyncio.Event()

            async def stop_in_message() -> None:
                while not in_prompt(r, number, "message"):
                    await asyncio.sleep(0.01)
                stop.set()
            stopper = asyncio.ensure_future(stop_in_message())
            await run_campaign(r, stop)
            await stopper
            await r.settled()
            return r.calls()[0], contact(r.store, number)["status"]
    call, status = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "hard-stop-message")
    assert call["retry_at"] is not None and status == "pending"


def test_which_outcomes_a_run_hang_up_keeps_come_from_the_table() -> None:
    kept = {t.name for t in outcomes.TABLE if outcomes.kept_after_run_hangup(t.name)}
    assert {"message_played", "declined", "declined_partial", "opted_out", "machine",
            "busy", "congestion"} <= kept
    assert not kept & {"message_partial", "hangup_intro", "no_input", "failed", "no_answer"}
