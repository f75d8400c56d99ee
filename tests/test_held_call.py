"""A callee who puts our call on hold after pressing 1 (call waiting: a re-INVITE a=sendonly)
hears nothing of what plays meanwhile: Asterisk sends no audio. The message and the legal
mentions played into a hold are not `heard`; they play again once the line is back, and a
consent whose message a hold kept unheard (still held after the wait, or a hangup meanwhile) is
`error`, retried, never `message_played`. On the fake PBX sending Hold/Unhold as Asterisk 22
does, over real AMI and FastAGI, the real IvrHandler and dialer, both stores."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ivr.callflow import flow
from ivr.callflow.flow import DONE, DTMF_KEYS, HANGUP, Play, Result, WaitUnhold
from ivr.telephony.ami_node import parse_event
from ivr.telephony.node import ChannelHold
from ivr.telephony.fake_pbx import answer, hangup_after

from conftest import Backend
from test_dialer import Rig, contact, fiction, rig
from test_flow import key, run

NUMBER = fiction(21)
HELD = Result(completed=True, held=True)  # a prompt played to its end into a held line
WAIT = WaitUnhold(flow.HOLD_WAIT_S)


def test_the_flow_plays_held_legal_mentions_again_and_never_counts_them() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), HELD), (WAIT, DONE), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), HELD)])
    assert out.outcome == "message_played"
    assert out.heard == ["message", "legal"]  # once, and not the held goodbye


@pytest.mark.parametrize("back", [Result(), HANGUP])  # still held after the wait; hung up
def test_the_flow_gives_error_when_the_held_message_is_never_heard(back: Result) -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), HELD),
               (WAIT, back)])
    assert (out.outcome, out.stage, out.heard) == ("error", "held-message", [])


def test_the_flow_gives_error_on_a_hangup_during_a_held_prompt() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), Result(hangup=True, held=True))])
    assert (out.outcome, out.stage, out.heard) == ("error", "held-legal", ["message"])


def test_a_refusal_hears_its_held_legal_mentions_again_once_back() -> None:
    """Before: a refusal's legal mentions played into a hold were never played again, and the
    call was stored `declined` (legal mentions heard) when the person heard none of them."""
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), HELD),
               (WAIT, DONE), (Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)])
    assert (out.outcome, out.choice, out.heard) == ("declined", "refusal", ["legal", "goodbye"])


def test_a_line_toggling_hold_is_given_up_after_hold_replays() -> None:
    """Before: a phone toggling hold had the message played again without end, the call and a
    channel of the node's cap kept for as long as it went on."""
    script = [(Play("intro", DTMF_KEYS, 5.0), key("1"))]
    script += [(Play("message", "9"), HELD), (WAIT, DONE)] * flow.HOLD_REPLAYS
    out = run(script + [(Play("message", "9"), DONE)])  # never asked for: the flow ended
    assert (out.outcome, out.stage, out.heard) == ("error", "held-message", [])


@pytest.mark.parametrize("back", [Result(), HANGUP])  # still held after the wait; hung up
def test_a_refusal_whose_legal_mentions_a_hold_kept_unheard_stays_a_refusal(back: Result
                                                                            ) -> None:
    """Its stage says why the mentions went unheard, whether the line stayed held or the person
    hung up while it was (before: `legal` after a hang-up, as if they had simply left)."""
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), HELD),
               (WAIT, back)])
    assert (out.outcome, out.choice, out.heard, out.stage) == \
        ("declined_partial", "refusal", [], "held-legal")


def test_a_refusal_hung_up_during_its_held_legal_mentions_says_so() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")),
               (Play("legal", "9"), Result(hangup=True, held=True))])
    assert (out.outcome, out.stage, out.heard) == ("declined_partial", "held-legal", [])


def test_a_refusal_hung_up_during_its_legal_mentions_keeps_stage_legal() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), HANGUP)])
    assert (out.outcome, out.stage) == ("declined_partial", "legal")


def test_no_input_hears_its_held_legal_mentions_again_once_back() -> None:
    script = [(Play("intro", DTMF_KEYS, 5.0), DONE), (flow.WaitKey(5.0), Result())]
    for _ in range(2):  # max_repeats: the no-input prompt, then the intro again
        script += [(Play("no_input", "129"), DONE), (Play("intro", DTMF_KEYS, 5.0), DONE),
                   (flow.WaitKey(5.0), Result())]
    script += [(Play("legal", "9"), HELD), (WAIT, DONE), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)]
    out = run(script)
    assert (out.outcome, out.heard.count("legal")) == ("no_input", 1)


def played(r: Rig, prompt: str) -> int:
    """How many times the call's IVR asked Asterisk to play `prompt`."""
    return sum(f"/{prompt}" in cmd for c in r.pbx.calls.values() for cmd in c.agi)


def channel(r: Rig) -> str:
    (channel_id,) = r.pbx.live
    return channel_id


async def ended(r: Rig) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=15)
    return (r.calls()[0], contact(r.store, NUMBER),
            r.store.q("SELECT kind, heard_sha256 FROM consents"))


def test_a_hold_during_the_message_plays_it_again_once_back(backend: Backend) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with rig(backend, {NUMBER: answer(["1"], prompt_s=0.6)}) as r:
            await r.dialer.dial(contact(r.store, NUMBER))
            await r.until(lambda: played(r, "message") == 1)
            r.pbx.hold(channel(r))
            await asyncio.sleep(0.2)
            r.pbx.hold(channel(r), held=False)  # back before the message ends
            return (*await ended(r), played(r, "message"), played(r, "legal"))
    call, person, consents, messages, legals = asyncio.run(scenario())
    assert (call["outcome"], person["status"]) == ("message_played", "done")
    assert (messages, legals) == (2, 1)  # the held message again, then the legal mentions
    assert [c["kind"] for c in consents] == ["consent"]
    assert set(json.loads(consents[0]["heard_sha256"])) >= {"message", "legal"}


def test_a_line_still_held_is_an_error_retried(backend: Backend,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect: the message, the legal mentions and goodbye played into a held line gave
    `message_played`, the proof saying both were heard, the contact done."""
    monkeypatch.setattr(flow, "HOLD_WAIT_S", 0.8)

    async def scenario() -> tuple[Any, ...]:
        async with rig(backend, {NUMBER: answer(["1"], prompt_s=0.6)}) as r:
            await r.dialer.dial(contact(r.store, NUMBER))
            await r.until(lambda: played(r, "message") == 1)
            r.pbx.hold(channel(r))  # and never back
            return (*await ended(r), played(r, "legal"))
    call, person, consents, legals = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "held-message")
    assert call["retry_at"] is not None and person["status"] == "pending"
    assert legals == 0
    for proof in consents:  # the key's record never says the message was heard
        assert not {"message", "legal"} & set(json.loads(proof["heard_sha256"] or "{}"))


def test_a_hangup_while_held_is_an_error_retried(backend: Backend) -> None:
    async def scenario() -> tuple[Any, ...]:
        # intro 0.6 s (1 pressed), then the message: held, and the callee hangs up at 2.5 s
        async with rig(backend, {NUMBER: hangup_after(2.5, ["1"], prompt_s=0.6)}) as r:
            await r.dialer.dial(contact(r.store, NUMBER))
            await r.until(lambda: played(r, "message") == 1)
            r.pbx.hold(channel(r))
            return await ended(r)
    call, person, consents = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("error", "held-message")
    assert call["retry_at"] is not None and person["status"] == "pending"
    for proof in consents:
        assert not {"message", "legal"} & set(json.loads(proof["heard_sha256"] or "{}"))


def test_a_refusal_held_during_its_legal_mentions_hears_them_once_back(backend: Backend
                                                                       ) -> None:
    """Key 2, then the callee takes another call while the legal mentions play: they play
    again once the line is back, and the refusal is stored `declined` with its proof row."""
    async def scenario() -> tuple[Any, ...]:
        async with rig(backend, {NUMBER: answer(["2"], prompt_s=0.6)}) as r:
            await r.dialer.dial(contact(r.store, NUMBER))
            await r.until(lambda: played(r, "legal") == 1)
            r.pbx.hold(channel(r))
            await asyncio.sleep(0.2)
            r.pbx.hold(channel(r), held=False)  # back before the legal mentions end
            return (*await ended(r), played(r, "legal"))
    call, person, consents, legals = asyncio.run(scenario())
    assert (call["outcome"], legals) == ("declined", 2)
    assert [c["kind"] for c in consents] == ["refusal"]


def test_hold_events_name_the_call_they_belong_to() -> None:
    """Asterisk 22's Hold/Unhold on the callee's channel: its Linkedid is the IVR-side id the
    call was originated with (the PJSIP channel itself, or behind a Local channel)."""
    hold = {"Event": "Hold", "Channel": "PJSIP/carrier-00000001", "Uniqueid": "1733.7",
            "Linkedid": "ivr-42", "MusicClass": ""}
    assert parse_event("n1", hold) == ChannelHold("n1", "ivr-42", held=True)
    assert parse_event("n1", {**hold, "Event": "Unhold"}) == ChannelHold("n1", "ivr-42",
                                                                         held=False)
