"""The proof of an opposition names the prompt the key 9 cut (or that was waited on when it
came), not the intro answered earlier. Found on the sandbox (2026-12-03): 9 during the message
after a yes stored prompt_key='intro' with the intro's sha256, and listed the intro among the
prompts heard although the 1 had cut it."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from conftest import add_contact, attempt
from ivr.callflow.agi_ivr import IvrHandler
from ivr.callflow.flow import DTMF_KEYS, FlowOptions, OptOutNow, Outcome, Play, Result, WaitKey
from test_flow import DONE, key, run

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
SLOTS = FlowOptions(ask_slot=True, slots={"1": "morning", "2": "afternoon"})
YES = [(Play("intro", DTMF_KEYS, 5.0), key("1"))]
NO = [(Play("intro", DTMF_KEYS, 5.0), key("2"))]
# where 9 arrives -> (the script up to it, the prompt the proof must name)
WHERE: dict[str, tuple[list[tuple[object, Result | None]], str]] = {
    "message": (YES + [(Play("message", "9"), key("9"))], "message"),
    "legal_after_yes": (YES + [(Play("message", "9"), DONE), (Play("legal", "9"), key("9"))],
                        "legal"),
    "legal_after_no": (NO + [(Play("legal", "9"), key("9"))], "legal"),
    "goodbye_after_no": (NO + [(Play("legal", "9"), DONE), (Play("goodbye", "9"), key("9"))],
                         "goodbye"),
    "slot_question": (YES + [(Play("message", "9"), DONE), (Play("legal", "9"), DONE),
                             (Play("slot_question", "129", 5.0), key("9"))], "slot_question"),
    "slot_wait": (YES + [(Play("message", "9"), DONE), (Play("legal", "9"), DONE),
                         (Play("slot_question", "129", 5.0), DONE), (WaitKey(5.0), key("9"))],
                  "slot_question"),
    "no_input": ([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
                  (Play("no_input", "129"), key("9"))], "no_input"),
    "intro": ([(Play("intro", DTMF_KEYS, 5.0), key("9"))], "intro"),
    "intro_wait": ([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), key("9"))], "intro"),
}


def _opted_out(where: str) -> Outcome:
    script, _ = WHERE[where]
    opts = SLOTS if where.startswith("slot") else FlowOptions()
    return run(script + [(OptOutNow("9"), Result()), (Play("optout_confirm"), DONE)], opts)


@pytest.mark.parametrize("where", list(WHERE))
def test_the_answered_prompt_is_the_one_playing_when_9_came(where: str) -> None:
    out = _opted_out(where)
    assert (out.outcome, out.choice, out.choice_key) == ("opted_out", "optout", "9")
    assert out.answered_prompt == WHERE[where][1]


def test_a_machine_that_was_a_person_names_the_legal_mentions() -> None:
    out = run([(Play("legal", "9"), key("9")), (OptOutNow("9"), Result()),
               (Play("optout_confirm"), DONE)], FlowOptions(on_machine="legal"), amd="MACHINE")
    assert (out.outcome, out.answered_prompt) == ("opted_out", "legal")


HASHES = {p: f"sha-{p}" for p in ("intro", "message", "legal", "goodbye", "no_input",
                                  "invalid", "optout_confirm", "slot_question")}


@pytest.mark.parametrize("where", ["message", "goodbye_after_no"])
def test_the_consents_row_of_an_optout_names_the_cut_prompt(store: Any, where: str) -> None:
    """The row as the IVR writes it, on both backends: prompt_key and prompt_sha256 are the
    cut prompt's; the intro, cut by the 1 or 2, is not among the prompts heard."""
    contact = add_contact(store, "+33612345601", at=T0, timezone="Europe/Paris")
    call_id = int(attempt(store, contact, "spring", "+33162000000", T0)["id"])
    result = IvrHandler._result(_opted_out(where), "HUMAN", "16", HASHES)
    store.finish_answered(call_id, result, T0)
    row = store.one("SELECT kind, key, prompt_key, prompt_sha256, heard_sha256 FROM consents")
    prompt = WHERE[where][1]
    assert (row["kind"], row["key"], row["prompt_key"], row["prompt_sha256"]) == \
        ("optout", "9", prompt, f"sha-{prompt}")
    heard = json.loads(row["heard_sha256"])
    assert "intro" not in heard and heard[prompt] == f"sha-{prompt}"
