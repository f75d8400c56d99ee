"""How the pure call flow goes over AGI: each step of flow.py as typed AGI commands.

`drive()` runs the flow generator against a live channel: a prompt (stream_file), a question
(get_option: played and listened on in one command, since res_agi drops a key pressed between
two), a wait for a key, a wait for a held line to come back; the flow's final choices reach
a ChoiceWatch as they are made. The handler (agi_ivr.py) stores what comes of it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ivr.callflow.flow import (DONE, HANGUP, Chosen, FlowGen, OptOutNow, Outcome, Play, Result,
                               WaitKey, WaitUnhold)
from ivr.telephony.contract import SOUNDS_DIR
from ivr.telephony.fastagi import CHANNEL_UP, AgiHangup, AgiRequest, StreamResult

if TYPE_CHECKING:  # the dialer's view of a call's hold (AMI Hold/Unhold)
    from ivr.campaign.nodes import LineHold
Line = Callable[[], "LineHold | None"]  # the call's hold, None while never held


def _no_hold() -> LineHold | None:
    return None


class PromptUnplayable(Exception):
    def __init__(self, message: str, sound: str) -> None:
        super().__init__(message)
        self.sound = sound  # the file Asterisk could not play


class FlowAborted(Exception):
    """The controller failed mid-flow; `outcome` is how far the call had gone (its choice)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"flow aborted at {outcome.stage}")
        self.outcome = outcome


def _abandon(gen: FlowGen) -> Outcome:
    """Finish the flow as if the line were cut, to learn the outcome reached so far."""
    for _ in range(8):  # an opt-out step may still ask to play its confirmation
        try:
            gen.send(HANGUP)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
    return Outcome(outcome="error", stage="controller")


class ChoiceWatch:
    """Reports each final choice the flow announces (flow.Chosen: a refusal, an opposition,
    the moment its key is pressed; a consent once its message and legal mentions were heard)
    for the store to keep before the call goes on (the call's end completes that row, never
    doubles it), and keeps the last one for a controller fault's settlement."""

    def __init__(self, report: Callable[[Outcome], None]) -> None:
        self.report = report
        self.last: Outcome | None = None  # the last choice reported

    def chose(self, reached: Outcome) -> None:
        self.last = reached
        self.report(reached)


# A key in the last frame of a sound (20 ms at 8 kHz) came as it ended: it was heard out.
FRAME_SAMPLES = 160


async def _sent(req: AgiRequest, step: Play, sound: str,
                line: Line) -> tuple[StreamResult, bool]:
    """The prompt's one command (a question listens on after it: get_option), and whether it
    overlapped a hold (held at its start or end, or a Hold meanwhile): Asterisk then played
    it into a line sending the callee nothing."""
    before = line()
    holds, was_held = (before.holds, before.held) if before is not None else (0, False)
    played = await req.get_option(sound, step.keys, int(step.listen_s * 1000)) \
        if step.listen_s > 0 else await req.stream_file(sound, step.keys)
    after = line()  # made at the first Hold: maybe during this prompt
    return played, after is not None and (was_held or after.held or after.holds != holds)


async def _cut(req: AgiRequest, sound: str, held: bool) -> Result:
    """A failed playback: a hangup, or a prompt Asterisk cannot play; the channel says which."""
    if await req.channel_status() == CHANNEL_UP:
        raise PromptUnplayable(f"Asterisk could not play {sound}: check that the prompts "
                               "are installed and Asterisk's user can read them and "
                               "their folders", sound)
    return Result(hangup=True, held=held)


def _ended(played: StreamResult, held: bool, sound: str) -> Result:
    """A prompt no key cut: played to its end (heard, unless a hold overlapped it)."""
    if played.played_nothing:
        raise PromptUnplayable(f"{sound} played nothing (missing file?)", sound)
    return Result(completed=True, held=True) if held else DONE


async def _play(req: AgiRequest, step: Play, sound: str | None = None,
                line: Line = _no_hold) -> Result:
    """Play one prompt: `sound`, its content-addressed file, else the plain ivr/<key>."""
    sound = sound or f"{SOUNDS_DIR}/{step.prompt}"
    played, held = await _sent(req, step, sound, line)
    if played.failed:
        return await _cut(req, sound, held)
    return Result(key=played.digit) if played.digit else _ended(played, held, sound)


async def _question(req: AgiRequest, step: Play, sound: str | None, line: Line,
                    samples: int | None) -> tuple[Result, Result | None]:
    """A prompt that asks (step.listen_s): played and listened on in one command. The second
    result answers the flow's next WaitKey. `samples`, the sound's length, tells a key that
    cut it from one pressed once it was heard out (unknown: taken as a cut, so the prompt is
    never claimed `heard`)."""
    sound = sound or f"{SOUNDS_DIR}/{step.prompt}"
    played, held = await _sent(req, step, sound, line)
    if played.failed:
        return await _cut(req, sound, held), None
    heard_out = samples is not None and played.endpos >= samples - FRAME_SAMPLES
    if played.digit and not heard_out:
        return Result(key=played.digit), None
    done = _ended(played, held, sound)
    if played.digit:
        return done, Result(key=played.digit)
    # No key: the time ran out, or the callee hung up while we listened (read as 0 too)
    return done, (Result() if await req.channel_status() == CHANNEL_UP else HANGUP)


async def _wait_unhold(line: LineHold | None, step: WaitUnhold) -> Result:
    """Wait for the Unhold (or the call's end) that the dialer's AMI events tell."""
    if line is not None and not line.gone:
        try:
            await asyncio.wait_for(line.settled.wait(), step.timeout_s)
        except asyncio.TimeoutError:
            return Result()  # still on hold
    return HANGUP if line is not None and line.gone else DONE


async def _wait(req: AgiRequest, step: WaitKey) -> Result:
    digit = await req.wait_for_digit(int(step.timeout_s * 1000))  # a hangup raises AgiHangup
    return Result(key=digit) if digit else Result()


async def drive(gen: FlowGen, req: AgiRequest, on_optout: Callable[[str], Awaitable[bool]],
                sounds: Mapping[str, str] | None = None,
                watch: ChoiceWatch | None = None, line: Line = _no_hold,
                samples: Mapping[str, int] | None = None) -> tuple[Outcome, bool]:
    """Run the flow generator against a live AGI channel. Returns the outcome and whether
    the flow ended on a hangup. `sounds`: prompt key -> the file to play (its version);
    `samples`: its length in samples (prompts/live.py); `watch`: told each choice as it
    becomes final (outcomes.final_at); `line`: the call's hold as the dialer's AMI events
    keep it."""
    sounds, samples = sounds or {}, samples or {}
    listened: Result | None = None  # a question's listening, for the WaitKey that follows
    try:
        step = next(gen)
    except StopIteration as stop:  # e.g. a machine, with nothing to play
        return stop.value, False
    while True:
        try:
            if isinstance(step, Play) and step.listen_s > 0:
                result, listened = await _question(req, step, sounds.get(step.prompt), line,
                                                   samples.get(step.prompt))
            elif isinstance(step, Play):
                listened, result = None, await _play(req, step, sounds.get(step.prompt), line)
            elif isinstance(step, WaitUnhold):
                listened, result = None, await _wait_unhold(line(), step)
            elif isinstance(step, WaitKey):
                result, listened = listened or await _wait(req, step), None
            elif isinstance(step, OptOutNow):  # True once the opposition is in the store
                result = Result(not_stored=not await on_optout(step.key))
            elif isinstance(step, Chosen):
                if watch is not None:
                    watch.chose(step.reached)
                result = Result()
            else:  # pragma: no cover - Step is a closed union
                raise TypeError(f"unknown step {step!r}")
        except AgiHangup:
            result = HANGUP
        except Exception as exc:  # keep the choice already made (see after_fault)
            raise FlowAborted(_abandon(gen)) from exc
        if req.hung_up and not result.key:
            result = replace(result, hangup=True)  # not_stored kept: the stage says it
        try:
            step = gen.send(result)
        except StopIteration as stop:
            return stop.value, result.hangup
