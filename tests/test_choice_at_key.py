"""A refusal (key 2) or an opposition (key 9) is stored the moment its key is pressed, and kept
when the controller dies before the call ends (found on the sandbox, 2026-12-03: a "no" stored
as `error`/`reconciled` with no proof row, and the person called again). So is a consent once
its message and legal mentions were heard (a hunt, 2026-12-03: a controller killed during the
goodbye left `error`, no proof, the person called again to hear it all twice). Every settle of
an answered call after a fault keeps it as the call's final outcome; its proof row is written
once. Both store backends."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ivr.callflow import outcomes
from ivr.callflow.agi_ivr import ChoiceWatch, IvrHandler
from ivr.callflow.flow import DTMF_KEYS, HANGUP, Chosen, OptOutNow, Play
from ivr.campaign import reconcile
from ivr.telephony.fake_pbx import answer
from ivr.telephony.fastagi import AgiRequest

from conftest import Backend, add_contact, attempt
from test_dialer import contact, fiction, rig
from test_flow import DONE, OPTS, key, run

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
HASHES = {p: f"sha-{p}" for p in ("intro", "legal", "goodbye", "optout_confirm", "message")}
NO = [(Play("intro", DTMF_KEYS, 5.0), key("2"))]


def _refusal_so_far() -> Any:
    """What the flow announces once the 2 is pressed: the refusal, the intro it answered."""
    told: list[Chosen] = []
    run(NO + [(Play("legal", "9"), HANGUP)], told=told)
    (chosen,) = told
    return chosen.reached


def test_the_flow_announces_a_refusal_and_an_opposition_once_each_as_pressed() -> None:
    told: list[Chosen] = []
    end = run(NO + [(Play("legal", "9"), DONE),          # the intro cut by a 2, legal heard
                    (Play("goodbye", "9"), key("9")),    # then a 9 during the goodbye
                    (OptOutNow("9"), None), (Play("optout_confirm"), DONE)], told=told)
    assert [(c.reached.choice, c.reached.choice_key, c.reached.answered_prompt,
             c.reached.outcome, c.reached.stage) for c in told] == \
        [("refusal", "2", "intro", "declined_partial", "legal"),
         ("optout", "9", "goodbye", "opted_out", "optout_confirm")]
    assert told[0].reached.heard == [] and end.heard[:1] == ["legal"]  # a snapshot, not shared
    consent: list[Chosen] = []
    run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), HANGUP)], told=consent)
    assert consent == []  # a consent cut off is retried: nothing final to keep


def test_a_consent_is_announced_once_heard_in_full_before_goodbye_or_slot() -> None:
    yes = [(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
           (Play("legal", "9"), DONE)]
    told: list[Chosen] = []
    end = run(yes + [(Play("goodbye", "9"), key("9")), (OptOutNow("9"), None),
                     (Play("optout_confirm"), DONE)], told=told)
    assert [(c.reached.choice, c.reached.choice_key, c.reached.answered_prompt,
             c.reached.outcome, c.reached.stage, c.reached.heard) for c in told] == \
        [("consent", "1", "intro", "message_played", "goodbye", ["message", "legal"]),
         ("optout", "9", "goodbye", "opted_out", "optout_confirm", ["message", "legal"])]
    assert end.outcome == "opted_out"  # the opposition after it still wins
    slot: list[Chosen] = []
    opts = replace(OPTS, ask_slot=True, slots={"1": "morning"})
    end = run(yes + [(Play("slot_question", "19", 5.0), key("1")), (Play("goodbye", "9"), DONE)],
              opts, told=slot)
    assert [(c.reached.outcome, c.reached.stage) for c in slot] == \
        [("message_played", "slot_question")] and end.slot == "morning"


def test_the_watch_reports_each_choice_and_keeps_the_last() -> None:
    reported: list[Any] = []
    watch = ChoiceWatch(reported.append)
    first, second = _refusal_so_far(), _refusal_so_far()
    watch.chose(first)
    watch.chose(second)
    assert reported == [first, second] and watch.last is second


def test_a_refusal_is_written_at_the_key_then_completed_once_at_the_end(store: Any) -> None:
    person = add_contact(store, "+33612345601", at=T0, timezone="Europe/Paris")
    call_id = int(attempt(store, person, "spring", "+33162000000", T0)["id"])
    store.mark_answered(call_id, T0)
    proof = IvrHandler._result(_refusal_so_far(), "HUMAN", "", HASHES)
    at = T0 + timedelta(seconds=4)
    assert store.record_choice(call_id, proof, at) is True
    assert store.record_choice(call_id, proof, at) is False  # once per call and kind
    assert store.choices_of(call_id) == {"refusal"}
    assert store.call(call_id)["keys"] == "2"
    end = run(NO + [(Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)])
    assert end.outcome == "declined"
    store.finish_answered(call_id, IvrHandler._result(end, "HUMAN", "16", HASHES),
                          T0 + timedelta(seconds=30))
    rows = store.q("SELECT kind, key, at, prompt_key, prompt_sha256, heard_sha256 "
                   "FROM consents")
    assert [(r["kind"], r["key"], r["prompt_key"], r["prompt_sha256"]) for r in rows] == \
        [("refusal", "2", "intro", "sha-intro")]
    assert rows[0]["at"].startswith("2026-12-03T09:00:04")  # the key's time
    assert set(json.loads(rows[0]["heard_sha256"])) >= {"legal", "goodbye"}  # the end's


@pytest.mark.parametrize("choices,outcome", [({"refusal"}, "declined_partial"),
                                             ({"optout"}, "opted_out"),
                                             ({"refusal", "optout"}, "opted_out"),
                                             ({"consent"}, "message_played"),
                                             ({"consent", "optout"}, "opted_out"),
                                             (set(), "error")])
def test_a_fault_settle_keeps_a_stored_final_choice(store: Any, choices: set[str],
                                                     outcome: str) -> None:
    person = add_contact(store, "+33612345602", at=T0, timezone="Europe/Paris")
    call_id = int(attempt(store, person, "spring", "+33162000000", T0)["id"])
    store.mark_answered(call_id, T0)
    for kind in sorted(choices):
        reached = _refusal_so_far()
        reached.choice, reached.choice_key = kind, {"refusal": "2", "optout": "9"}.get(kind, "1")
        reached.heard = ["message", "legal"] if kind == "consent" else reached.heard
        store.record_choice(call_id, IvrHandler._result(reached, "", "", HASHES), T0)
    result = reconcile.answered_fault(store, call_id, "reconciled")
    assert (result.outcome, result.stage, result.choice) == (outcome, "reconciled", None)
    assert outcomes.kept_choice(choices) == (None if outcome == "error" else outcome)


def _killed_during(backend: Backend, monkeypatch: pytest.MonkeyPatch, keys: list[Any],
                   prompt: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """One call whose controller task dies (cancelled: no result, as under SIGKILL) when
    `prompt` starts; the dialer settles it from the hangup, as a restart's reconciliation."""
    number, play = fiction(20), AgiRequest.stream_file

    async def killed(self: AgiRequest, path: str, escape: str = "") -> Any:
        if path.rsplit("/", 1)[-1].split("-")[0] == prompt:
            raise asyncio.CancelledError  # the controller gone mid-call, nothing written
        return await play(self, path, escape)
    monkeypatch.setattr(AgiRequest, "stream_file", killed)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        async with rig(backend, {number: answer(keys)}) as r:
            await r.dialer.dial(contact(r.store, number))
            await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=15)
            kinds = [c["kind"] for c in r.store.q("SELECT kind FROM consents ORDER BY id")]
            return r.calls()[0], contact(r.store, number), kinds
    return asyncio.run(scenario())


@pytest.mark.parametrize("keys,prompt,outcome,kinds,status", [
    (["2"], "legal", "declined_partial", ["refusal"], "done"),
    (["9"], "optout_confirm", "opted_out", ["optout"], "opted_out"),
    (["1"], "message", "error", [], "pending"),  # a consent cut off: retried, unchanged
    (["1"], "goodbye", "message_played", ["consent"], "done"),  # message and legal heard
    (["1", None, None, "9"], "optout_confirm", "opted_out", ["consent", "optout"], "opted_out"),
])
def test_a_choice_survives_a_controller_killed_mid_call(
        backend: Backend, monkeypatch: pytest.MonkeyPatch, keys: list[Any], prompt: str,
        outcome: str, kinds: list[str], status: str) -> None:
    call, person, stored = _killed_during(backend, monkeypatch, keys, prompt)
    assert (call["outcome"], person["status"], stored) == (outcome, status, kinds)
    assert call["keys"] == ("".join(k for k in keys if k) if kinds else "")  # with the choice
    assert (call["retry_at"] is None) == (outcome != "error")  # never called again


def test_a_consent_heard_in_full_has_one_proof_row_written_before_the_goodbye(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """No controller death: the row written as the goodbye starts is completed at the end
    (its heard prompts, the goodbye included), never doubled; the call is message_played."""
    number, play, rows_at_goodbye = fiction(21), AgiRequest.stream_file, []

    async def scenario() -> tuple[dict[str, Any], list[Any]]:
        async with rig(backend, {number: answer(["1"])}) as r:
            async def watched(self: AgiRequest, path: str, escape: str = "") -> Any:
                if path.rsplit("/", 1)[-1].split("-")[0] == "goodbye":
                    await r.settled()  # the writes made so far have landed
                    rows_at_goodbye.append(r.store.choices_of(r.calls()[0]["id"]))
                return await play(self, path, escape)
            monkeypatch.setattr(AgiRequest, "stream_file", watched)
            await r.dialer.dial(contact(r.store, number))
            await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=15)
            return r.calls()[0], r.store.q("SELECT kind, key, heard_sha256 FROM consents")
    call, rows = asyncio.run(scenario())
    assert (call["outcome"], call["retry_at"], rows_at_goodbye) == \
        ("message_played", None, [{"consent"}])
    assert [(r["kind"], r["key"]) for r in rows] == [("consent", "1")]
    assert set(json.loads(rows[0]["heard_sha256"])) >= {"message", "legal", "goodbye"}
