"""The call flow driven by a script of results: every branch, no Asterisk."""
from __future__ import annotations

import pytest

from ivr.callflow.flow import (WaitUnhold, DONE, DTMF_KEYS, HANGUP, Chosen, FlowOptions, OptOutNow, Outcome,
                               Play, Result, WaitKey, call_flow)

OPTS = FlowOptions(max_repeats=2, input_timeout_s=5)


def key(k: str) -> Result:
    return Result(key=k)


def run(script: list[tuple[object, Result | None]], opts: FlowOptions = OPTS,
        amd: str = "", told: list[Chosen] | None = None) -> Outcome:
    """Drive the flow: each script item is (expected step, result to send back). The final
    choices it announces (Chosen, no I/O) are collected in `told`, not scripted."""
    gen = call_flow(opts, amd)
    step = next(gen)
    told = [] if told is None else told
    for expected, result in script:
        while isinstance(step, Chosen):
            told.append(step)
            step = gen.send(Result())
        assert step == expected
        try:
            step = gen.send(result if result is not None else Result())
        except StopIteration as stop:
            return stop.value
    raise AssertionError(f"flow still running, next step {step!r}")


def test_yes_during_intro_plays_message_legal_goodbye() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)])
    assert out.outcome == "message_played"
    assert out.keys == "1" and out.choice == "consent" and out.choice_key == "1"
    assert out.heard == ["message", "legal", "goodbye"]
    assert out.answered_prompt == "intro"


def test_yes_after_intro_counts_and_intro_is_heard() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), key("1")),
               (Play("message", "9"), DONE), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)])
    assert out.outcome == "message_played"
    assert out.heard == ["intro", "message", "legal", "goodbye"]


def test_no_plays_legal_then_goodbye() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)])
    assert (out.outcome, out.choice, out.keys) == ("declined", "refusal", "2")


def test_no_then_hangup_during_legal_is_declined_partial() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), HANGUP)])
    assert (out.outcome, out.stage) == ("declined_partial", "legal")


def test_no_then_hangup_during_goodbye_is_declined() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), HANGUP)])
    assert out.outcome == "declined"


def test_yes_then_hangup_during_message_is_partial() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), HANGUP)])
    assert (out.outcome, out.stage) == ("message_partial", "message")


def test_yes_then_hangup_during_legal_part_of_message_is_partial() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), HANGUP)])
    assert out.outcome == "message_partial"


def test_hangup_during_intro() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), HANGUP)])
    assert (out.outcome, out.stage, out.keys) == ("hangup_intro", "intro", "")


def test_hangup_while_waiting_for_choice() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), HANGUP)])
    assert (out.outcome, out.stage) == ("hangup_intro", "choice")


def test_invalid_key_then_yes() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("7")), (Play("invalid", "129"), DONE),
               (Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)])
    assert (out.outcome, out.keys) == ("message_played", "71")


def test_no_input_repeats_then_legal_and_goodbye() -> None:
    script: list[tuple[object, Result | None]] = []
    for _ in range(OPTS.max_repeats):
        script += [(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
                   (Play("no_input", "129"), DONE)]
    script += [(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
               (Play("legal", "9"), DONE), (Play("goodbye", "9"), DONE)]
    out = run(script)
    assert out.outcome == "no_input" and out.choice is None and out.keys == ""


def test_no_input_then_hangup_during_legal_stays_no_input() -> None:
    opts = FlowOptions(max_repeats=0)
    out = run([(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
               (Play("legal", "9"), HANGUP)], opts)
    assert (out.outcome, out.stage) == ("no_input", "legal")


def test_invalid_keys_are_bounded_by_max_repeats() -> None:
    opts = FlowOptions(max_repeats=1)
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("5")), (Play("invalid", "129"), DONE),
               (Play("intro", DTMF_KEYS, 5.0), key("5")), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)], opts)
    assert (out.outcome, out.keys) == ("no_input", "55")


@pytest.mark.parametrize("where", ["intro", "wait", "message", "legal", "no_input"])
def test_optout_key_at_any_moment(where: str) -> None:
    prefix: dict[str, list[tuple[object, Result | None]]] = {
        "intro": [(Play("intro", DTMF_KEYS, 5.0), key("9"))],
        "wait": [(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), key("9"))],
        "message": [(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), key("9"))],
        "legal": [(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), key("9"))],
        "no_input": [(Play("intro", DTMF_KEYS, 5.0), DONE), (WaitKey(5), Result()),
                     (Play("no_input", "129"), key("9"))],
    }
    out = run(prefix[where] + [(OptOutNow("9"), Result()), (Play("optout_confirm"), DONE)])
    assert out.outcome == "opted_out" and out.choice == "optout"
    assert out.keys.endswith("9")


def test_optout_is_recorded_before_the_confirmation_plays() -> None:
    gen = call_flow(OPTS)
    assert next(gen) == Play("intro", DTMF_KEYS, 5.0)
    assert gen.send(key("9")) == OptOutNow("9")
    chosen = gen.send(Result())  # then the choice, for the store to keep at once
    assert isinstance(chosen, Chosen) and chosen.reached.outcome == "opted_out"
    assert gen.send(Result()) == Play("optout_confirm")
    with pytest.raises(StopIteration) as stop:
        gen.send(HANGUP)  # hanging up on the confirmation keeps the opt-out
    assert stop.value.value.outcome == "opted_out"


def test_an_opposition_the_store_has_not_taken_yet_gets_the_written_route() -> None:
    """The driver says the store had not taken it in time (still queued): the callee hears
    the legal mentions, the written route to object, not a confirmation that is not yet
    true; the outcome is the opposition all the same."""
    gen = call_flow(OPTS)
    assert next(gen) == Play("intro", DTMF_KEYS, 5.0)
    assert gen.send(key("9")) == OptOutNow("9")
    chosen = gen.send(Result(not_stored=True))
    assert isinstance(chosen, Chosen) and chosen.reached.outcome == "opted_out"
    assert gen.send(Result()) == Play("legal")
    with pytest.raises(StopIteration) as stop:
        gen.send(DONE)
    assert (stop.value.value.outcome, stop.value.value.stage) == ("opted_out", "legal")


def test_the_written_route_after_an_unstored_opposition_plays_again_after_a_hold() -> None:
    """The legal mentions are owed: played into a hold, they play again once the line is
    back, as on every other path."""
    gen = call_flow(OPTS)
    next(gen)
    gen.send(key("9"))
    assert isinstance(gen.send(Result(not_stored=True)), Chosen)
    assert gen.send(Result()) == Play("legal")
    assert isinstance(gen.send(Result(completed=True, held=True)), WaitUnhold)
    assert gen.send(DONE) == Play("legal")
    with pytest.raises(StopIteration) as stop:
        gen.send(DONE)
    assert stop.value.value.outcome == "opted_out"


def test_machine_hangs_up_without_playing() -> None:
    gen = call_flow(OPTS, "MACHINE")
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value.outcome == "machine"


def test_machine_with_legal_plays_only_the_legal_mentions() -> None:
    opts = FlowOptions(on_machine="legal")
    out = run([(Play("legal", "9"), DONE)], opts, amd="MACHINE")
    assert out.outcome == "machine" and out.heard == ["legal"]


def test_a_person_taken_for_a_machine_can_still_object() -> None:
    """Opposition at any time: 9 during the legal mentions played to a 'machine' is heard."""
    opts = FlowOptions(on_machine="legal")
    out = run([(Play("legal", "9"), key("9")), (OptOutNow("9"), Result()),
               (Play("optout_confirm"), DONE)], opts, amd="MACHINE")
    assert out.outcome == "opted_out"


def test_notsure_amd_is_treated_as_a_human() -> None:
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("2")), (Play("legal", "9"), DONE),
               (Play("goodbye", "9"), DONE)], amd="NOTSURE")
    assert out.outcome == "declined"


def test_slot_question_after_yes() -> None:
    opts = FlowOptions(ask_slot=True, slots={"1": "morning", "2": "afternoon"})
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), DONE), (Play("slot_question", "129", 5.0), DONE),
               (WaitKey(5.0), key("2")), (Play("goodbye", "9"), DONE)], opts)
    assert (out.outcome, out.slot, out.keys) == ("message_played", "afternoon", "12")


def test_hangup_during_slot_question_keeps_message_played() -> None:
    opts = FlowOptions(ask_slot=True, slots={"1": "morning"})
    out = run([(Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), DONE), (Play("slot_question", "19", 5.0), HANGUP)], opts)
    assert out.outcome == "message_played" and out.slot is None


@pytest.mark.parametrize("during_prompt", [True, False])
def test_optout_key_during_the_slot_question(during_prompt: bool) -> None:
    opts = FlowOptions(ask_slot=True, slots={"1": "morning", "2": "afternoon"})
    script: list[tuple[object, Result | None]] = [
        (Play("intro", DTMF_KEYS, 5.0), key("1")), (Play("message", "9"), DONE),
        (Play("legal", "9"), DONE)]
    if during_prompt:
        script.append((Play("slot_question", "129", 5.0), key("9")))
    else:
        script += [(Play("slot_question", "129", 5.0), DONE), (WaitKey(5.0), key("9"))]
    out = run(script + [(OptOutNow("9"), Result()), (Play("optout_confirm"), DONE)], opts)
    assert (out.outcome, out.choice, out.slot) == ("opted_out", "optout", None)


def test_the_questions_are_listened_on_for_the_input_timeout() -> None:
    """The intro and the slot question ask: the driver listens on after them for
    input_timeout_s in the same command (a key between two AGI commands is lost)."""
    opts = FlowOptions(input_timeout_s=7, ask_slot=True, slots={"1": "morning"})
    out = run([(Play("intro", DTMF_KEYS, 7), key("1")), (Play("message", "9"), DONE),
               (Play("legal", "9"), DONE), (Play("slot_question", "19", 7), DONE),
               (WaitKey(7), key("1")), (Play("goodbye", "9"), DONE)], opts)
    assert (out.outcome, out.slot) == ("message_played", "morning")
