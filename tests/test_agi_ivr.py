"""The FastAGI handlers read only typed results: each StreamResult kind, a key, a timeout and a
hangup map to the flow's results (agi_ivr) or to the opposition being stored or not
(agi_callback). A scripted channel stands in for AgiRequest's typed methods."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr.callflow.agi_callback import CallbackHandler, caller_e164
from ivr.callflow.agi_drive import PromptUnplayable, _play, _question, _wait, drive
from ivr.callflow.agi_ivr import hangup_cause
from ivr.callflow.flow import DONE, HANGUP, Outcome, Play, Result, WaitKey
from ivr.telephony.contract import ARG_CALLBACK_SECRET, SOUNDS_DIR, VAR_DONE
from ivr.telephony.fastagi import CHANNEL_UP, AgiHangup, StreamResult


class Channel:
    """Answers each typed call from a script; an exception in the script is raised."""

    def __init__(self, *script: Any, status: int | None = CHANNEL_UP,
                 headers: dict[str, str] | None = None) -> None:
        self.script = list(script)
        self.status = status
        self.headers = headers or {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.hung_up = False
        self.lost = False

    def _next(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def stream_file(self, path: str, escape_digits: str = "") -> StreamResult:
        return self._next("stream_file", path, escape_digits)

    async def get_option(self, path: str, escape_digits: str, timeout_ms: int) -> StreamResult:
        return self._next("get_option", path, escape_digits, timeout_ms)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self._next("wait_for_digit", timeout_ms)

    async def get_variable(self, name: str) -> str | None:
        return self._next("get_variable", name)

    async def channel_status(self) -> int | None:
        self.calls.append(("channel_status", ()))
        return self.status

    async def hangup(self) -> None:
        self.calls.append(("hangup", ()))

    async def set_variable(self, name: str, value: str) -> None:
        self.calls.append(("set_variable", (name, value)))

    @property
    def writer(self) -> Any:  # the handlers log the peer of a refused session
        return type("W", (), {"get_extra_info": staticmethod(lambda name: ("10.0.0.9", 1))})()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_play_maps_each_stream_result() -> None:
    step = Play("intro", "129")
    ch = Channel(StreamResult(digit="2", endpos=800))
    assert run(_play(ch, step)) == Result(key="2")
    assert ch.calls == [("stream_file", (f"{SOUNDS_DIR}/intro", "129"))]
    assert run(_play(Channel(StreamResult(endpos=8000)), step)) == DONE
    with pytest.raises(PromptUnplayable, match="played nothing"):
        run(_play(Channel(StreamResult()), step))


def test_a_failed_playback_is_a_hangup_unless_the_line_is_still_up() -> None:
    step = Play("intro", "9")
    with pytest.raises(PromptUnplayable, match="could not play ivr/intro"):
        run(_play(Channel(StreamResult(failed=True), status=CHANNEL_UP), step))
    gone = Channel(StreamResult(failed=True), status=None)
    assert run(_play(gone, step)) == HANGUP
    assert gone.calls[-1] == ("channel_status", ())
    assert run(_play(Channel(StreamResult(failed=True), status=CHANNEL_UP - 1), step)) == HANGUP


def test_wait_maps_key_and_timeout_and_lets_a_hangup_through() -> None:
    assert run(_wait(Channel("7"), WaitKey(3))) == Result(key="7")
    ch = Channel(None)
    assert run(_wait(ch, WaitKey(2.5))) == Result()
    assert ch.calls == [("wait_for_digit", (2500,))]
    with pytest.raises(AgiHangup):
        run(_wait(Channel(AgiHangup("gone")), WaitKey(3)))


def test_hangup_cause_reads_the_variable() -> None:
    ch = Channel("16")
    assert run(hangup_cause(ch)) == "16" and ch.calls == [("get_variable", ("HANGUPCAUSE",))]
    assert run(hangup_cause(Channel(None))) == ""
    assert run(hangup_cause(Channel(AgiHangup("gone")))) == ""
    lost = Channel()
    lost.lost = True
    assert run(hangup_cause(lost)) == "" and lost.calls == []


class OptOuts:
    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    def add_optout(self, number: str, via: str, when: datetime, *rest: Any) -> None:
        self.added.append((number, via))


SECRET = "callback-secret-0123456789"


def _callback(ch: Channel) -> list[tuple[str, str]]:
    store = OptOuts()  # only add_optout is used: a stand-in for Store
    handler = CallbackHandler(store, "FR", lambda: datetime.now(timezone.utc),  # type: ignore
                              timeout_s=4, secret=SECRET)
    run(handler(ch))
    return store.added


CALLER = {"agi_callerid": "0199000077", ARG_CALLBACK_SECRET: SECRET}
OPTED = [("+33199000077", "phone-callback")]


DONE_SET = ("set_variable", (VAR_DONE, "1"))  # the dialplan skips its failsafe only on this


@pytest.mark.parametrize("script,expected,done", [
    ((StreamResult(digit="1", endpos=10), StreamResult(endpos=10)), OPTED, True),  # in notice
    ((StreamResult(digit="1", endpos=8000), StreamResult(endpos=10)), OPTED, True),  # after it
    # nothing, or another key (res_agi drops a key that is not an escape digit): asked again
    ((StreamResult(endpos=8000),) * 2 + (StreamResult(endpos=10),), [], True),
    # hung up while listening (read as no key): the next command tells
    ((StreamResult(endpos=8000), AgiHangup("gone")), [], False),
    ((StreamResult(failed=True),), [], False),  # notice failed: the failsafe's legal mentions
])
def test_callback_stores_the_opposition_only_on_confirmation(script: tuple[Any, ...],
                                                             expected: list, done: bool) -> None:
    ch = Channel(*script, headers=CALLER)
    assert _callback(ch) == expected
    # The notice and the listening after it in one command: a key between two is lost
    assert ch.calls[0] == ("get_option", (f"{SOUNDS_DIR}/callback_notice", "19", 4000))
    assert not [c for c in ch.calls if c[0] == "wait_for_digit"]
    if expected:
        assert ch.calls[-2] == ("stream_file", (f"{SOUNDS_DIR}/optout_confirm", ""))
    elif done:  # asked once more, then the written way to object (tests/test_callback_key9.py)
        assert ch.calls[-2] == ("stream_file", (f"{SOUNDS_DIR}/legal", "19"))
    assert (ch.calls[-1] == DONE_SET) is done and ch.calls.count(DONE_SET) == int(done)


@pytest.mark.parametrize("given", [None, "", SECRET[:-1], SECRET + "x", SECRET.upper()])
def test_a_callback_without_the_secret_writes_nothing_and_leaves_the_failsafe(
        given: str | None, caplog: pytest.LogCaptureFixture) -> None:
    """A real caller meets this when [globals] and the controller disagree on the secret:
    nothing is recorded and nothing sent, so the dialplan's failsafe asks for the key itself
    and journals the caller (setting IVR_DONE after the legal mentions skipped it)."""
    headers = {"agi_callerid": "0199000077"}
    if given is not None:
        headers[ARG_CALLBACK_SECRET] = given
    ch = Channel(StreamResult(digit="1", endpos=10), StreamResult(endpos=10), headers=headers)
    assert _callback(ch) == []
    assert ch.calls == []
    assert "without the callback secret" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("raw, number", [
    ("262692123456", "+262692123456"),   # Réunion, presented without its '+'
    ("+262692123456", "+262692123456"), ("0692123456", "+262692123456"),
    ("33612345678", "+33612345678"), ("0612345678", "+33612345678"),
    ("anonymous", None), ("", None), ("12", None)])
def test_the_callers_number_is_read_with_or_without_its_plus(raw: str, number: str | None) -> None:
    assert caller_e164(raw, "FR") == number


@pytest.mark.parametrize("raw, region, number", [
    # Found in review: the SIP URI's user parameters (Asterisk copies the whole user part)
    ("+33612345678;cpc=ordinary", "FR", "+33612345678"), ("0612345678;npdi", "FR", "+33612345678"),
    # ... and a platform in Réunion or Guadeloupe (default_region) read a mainland caller's
    # national form as an invalid number of its own region: the objection was lost
    ("0612345678", "RE", "+33612345678"), ("0147000000", "RE", "+33147000000"),
    ("0692123456", "RE", "+262692123456"), ("0690123456", "GP", "+590690123456"),
    (";cpc=ordinary", "FR", None)])
def test_the_callers_number_from_a_sip_uri_or_an_overseas_platform(
        raw: str, region: str, number: str | None) -> None:
    assert caller_e164(raw, region) == number


def test_a_withheld_caller_hears_the_written_route() -> None:
    ch = Channel(StreamResult(endpos=10), headers={"agi_callerid": "anonymous",
                                                   ARG_CALLBACK_SECRET: SECRET})
    assert _callback(ch) == []
    assert ch.calls == [("stream_file", (f"{SOUNDS_DIR}/legal", "")), DONE_SET]
    cut = Channel(StreamResult(failed=True), headers=ch.headers)  # legal cut: failsafe replays
    assert _callback(cut) == [] and DONE_SET not in cut.calls


def test_drive_plays_the_content_addressed_version_of_each_prompt() -> None:
    """Issue 18: the file played is the version whose sha256 the attempt records."""
    def flow() -> Any:
        yield Play("intro", "1")
        yield Play("legal", "")
        return Outcome(outcome="declined", stage="legal")
    ch = Channel(StreamResult(endpos=8000), StreamResult(endpos=8000))
    sounds = {"intro": "ivr/a-12345678/intro-0123456789ab"}
    outcome, _ = run(drive(flow(), ch, lambda key: None, sounds))
    assert outcome.outcome == "declined"
    assert ch.calls == [("stream_file", ("ivr/a-12345678/intro-0123456789ab", "1")),
                        ("stream_file", (f"{SOUNDS_DIR}/legal", ""))]  # no version: plain


@pytest.mark.parametrize("stored,last", [(True, "optout_confirm"), (False, "legal")])
def test_a_key_9_is_confirmed_only_once_the_store_has_the_opposition(
        stored: bool, last: str) -> None:
    """drive() waits for on_optout (the writer's commit, bounded) before the flow goes on:
    confirmed once stored; still queued, the legal mentions (the written route) instead."""
    from ivr.callflow.flow import FlowOptions, call_flow
    asked: list[str] = []

    async def on_optout(key: str) -> bool:
        asked.append(key)
        return stored
    ch = Channel(StreamResult(digit="9", endpos=10), StreamResult(endpos=8000))
    outcome, _ = run(drive(call_flow(FlowOptions()), ch, on_optout))
    assert asked == ["9"] and outcome.outcome == "opted_out"
    assert ch.calls[-1] == ("stream_file", (f"{SOUNDS_DIR}/{last}", ""))


def test_the_line_gives_the_legal_mentions_when_the_store_has_not_taken_the_opposition() -> None:
    """The callback line's commit says the store did not take it in time: no confirmation;
    the legal mentions, and the flag (they were heard)."""
    store = OptOuts()

    async def not_yet(fn: Any, within_s: float) -> bool:
        fn()  # queued: written later
        return False
    handler = CallbackHandler(store, "FR", lambda: datetime.now(timezone.utc),  # type: ignore
                              timeout_s=4, secret=SECRET, commit=not_yet)
    ch = Channel(StreamResult(digit="1", endpos=10), StreamResult(endpos=10), headers={
        "agi_callerid": "0612345678", ARG_CALLBACK_SECRET: SECRET})
    run(handler(ch))
    assert store.added == [("+33612345678", "phone-callback")]
    assert ch.calls[-2:] == [("stream_file", (f"{SOUNDS_DIR}/legal", "")),
                             ("set_variable", (VAR_DONE, "1"))]


def test_a_hangup_during_the_wait_for_the_store_keeps_the_opposition_unconfirmed() -> None:
    """The callee hangs up while the opposition waits for the store, which does not take it
    in time: the flow goes the unstored way (the legal mentions, cut by the hangup), never
    the confirmation's, and the outcome is the opposition."""
    from ivr.callflow.flow import FlowOptions, call_flow
    ch = Channel(StreamResult(digit="9", endpos=10), StreamResult(failed=True), status=None)

    async def on_optout(key: str) -> bool:
        ch.hung_up = True  # the hangup arrives meanwhile
        return False
    outcome, hung_up = run(drive(call_flow(FlowOptions()), ch, on_optout))
    assert hung_up and outcome.outcome == "opted_out" and outcome.stage != "optout_confirm"
    assert ("stream_file", (f"{SOUNDS_DIR}/optout_confirm", "")) not in ch.calls


INTRO = Play("intro", "129", 5.0)  # a question: listened on after it ends
LENGTH = 38_400  # the intro's samples, as the archive gives them


def test_a_question_is_played_and_listened_on_in_one_command() -> None:
    """res_agi drops a key pressed between two commands: the intro and the wait after it go
    as one GET OPTION, and the flow's WaitKey is answered from it, no WAIT FOR DIGIT sent."""
    ch = Channel(StreamResult(digit="1", endpos=LENGTH))
    result, listened = run(_question(ch, INTRO, None, lambda: None, LENGTH))
    assert (result, listened) == (DONE, Result(key="1"))  # heard out, then answered
    assert ch.calls == [("get_option", (f"{SOUNDS_DIR}/intro", "129", 5000))]


@pytest.mark.parametrize("endpos,length,heard", [
    (LENGTH - 160, LENGTH, True),    # in its last frame: it was heard out
    (LENGTH - 161, LENGTH, False),   # cut short
    (LENGTH, None, False),           # length unknown: never claimed heard
])
def test_a_key_that_cut_the_question_is_told_from_one_after_it(
        endpos: int, length: int | None, heard: bool) -> None:
    result, listened = run(_question(Channel(StreamResult(digit="2", endpos=endpos)), INTRO,
                                     None, lambda: None, length))
    assert (result, listened) == ((DONE, Result(key="2")) if heard else (Result(key="2"), None))


@pytest.mark.parametrize("status,listened", [(CHANNEL_UP, Result()), (None, HANGUP)])
def test_no_key_is_a_timeout_or_a_hangup_as_the_channel_says(
        status: int | None, listened: Result) -> None:
    """res_agi reads a hangup while listening as result=0: the channel's status tells."""
    ch = Channel(StreamResult(endpos=LENGTH), status=status)
    assert run(_question(ch, INTRO, None, lambda: None, LENGTH)) == (DONE, listened)
    assert ch.calls[-1] == ("channel_status", ())


def test_drive_answers_the_wait_after_a_question_from_its_listening() -> None:
    """The whole flow: the 1 pressed once the intro was heard out is the consent, the intro is
    in `heard`, and the only commands are prompts."""
    from ivr.callflow.flow import FlowOptions, call_flow
    ch = Channel(StreamResult(digit="1", endpos=LENGTH), *[StreamResult(endpos=8000)] * 3)
    outcome, hung_up = run(drive(call_flow(FlowOptions()), ch, lambda key: None,
                                 samples={"intro": LENGTH}))
    assert (outcome.outcome, outcome.keys, hung_up) == ("message_played", "1", False)
    assert outcome.heard == ["intro", "message", "legal", "goodbye"]
    assert [c[0] for c in ch.calls] == ["get_option"] + ["stream_file"] * 3


def test_a_hangup_while_listening_ends_at_the_choice() -> None:
    from ivr.callflow.flow import FlowOptions, call_flow
    ch = Channel(StreamResult(endpos=LENGTH), status=None)
    outcome, hung_up = run(drive(call_flow(FlowOptions()), ch, lambda key: None,
                                 samples={"intro": LENGTH}))
    assert (outcome.outcome, outcome.stage, outcome.heard, hung_up) == \
        ("hangup_intro", "choice", ["intro"], True)
