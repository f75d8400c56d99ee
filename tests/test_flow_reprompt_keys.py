"""A 1 or 2 pressed while the "no input" / "invalid" re-prompt plays is the person's choice:
it answers the intro at once and is kept in calls.keys. Found on the sandbox (2026-12-03): the
re-prompt had only the opt-out key live, so the key was lost and the whole intro played again."""
from __future__ import annotations

import pytest

from ivr.callflow.flow import DTMF_KEYS, FlowOptions, OptOutNow, Play, Result, WaitKey
from test_flow import DONE, HANGUP, OPTS, key, run

REASK_KEYS = "129"  # yes, no and the opt-out key


@pytest.mark.parametrize("first", ["no_input", "invalid"])
def test_yes_during_the_reprompt_plays_the_message(first: str) -> None:
    start = ([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result())] if first == "no_input"
             else [(Play("intro", DTMF_KEYS, 5.0), key("7"))])
    out = run(start + [(Play(first, REASK_KEYS), key("1")), (Play("message", "9"), DONE),
                       (Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)])
    assert (out.outcome, out.choice, out.choice_key) == ("message_played", "consent", "1")
    assert out.keys == ("1" if first == "no_input" else "71")
    assert out.answered_prompt == "intro"  # the question the key answers


def test_no_during_the_reprompt_gives_the_legal_mentions() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
               (Play("no_input", REASK_KEYS), key("2")), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)])
    assert (out.outcome, out.choice, out.choice_key, out.keys) == \
        ("declined", "refusal", "2", "2")
    assert out.heard == ["intro", "legal", "goodbye"]


def test_the_yes_and_no_keys_of_the_config_are_live_during_the_reprompt() -> None:
    opts = FlowOptions(yes_key="4", no_key="5", optout_key="0", max_repeats=2)
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("7")), (Play("invalid", "450"), key("5")),
               (Play("legal", "0"), DONE), (Play("goodbye", "0"), DONE)], opts)
    assert (out.outcome, out.choice_key, out.keys) == ("declined", "5", "75")


def test_a_choice_on_the_last_reprompt_still_counts() -> None:
    """The last re-prompt before the repeats run out: the key is a choice, not no_input."""
    opts = FlowOptions(max_repeats=1)
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("5")), (Play("invalid", REASK_KEYS), key("1")),
               (Play("message", "9"), HANGUP)], opts)
    assert (out.outcome, out.choice, out.keys) == ("message_partial", "consent", "51")


def test_the_optout_key_during_the_reprompt_still_opts_out() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
               (Play("no_input", REASK_KEYS), key("9")), (OptOutNow("9"), Result()),
               (Play("optout_confirm"), DONE)], OPTS)
    assert (out.outcome, out.choice, out.keys) == ("opted_out", "optout", "9")
