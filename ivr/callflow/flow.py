"""The call flow as pure logic (sans-IO), in the manner of httpx's Auth.auth_flow.

`call_flow()` is a generator: it yields steps (play this prompt with these keys live, wait for a
key, record an opt-out now) and receives each step's result. It never touches a socket, a clock
or a database; the FastAGI adapter drives it on a real call, unit tests drive it with a script.

Yes path: `message` then `legal` (the political message ends with the legal mentions, as the
CNIL requires), then `goodbye`. `message_played` means both were heard to the end.
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

DTMF_KEYS = "0123456789*#"


@dataclass(frozen=True)
class Play:
    prompt: str
    keys: str = ""  # keys that interrupt the prompt ("" = none)


@dataclass(frozen=True)
class WaitKey:
    timeout_s: float


@dataclass(frozen=True)
class OptOutNow:
    """Put the number on the opposition list at once, before the call goes on."""
    key: str


Step = Play | WaitKey | OptOutNow


@dataclass(frozen=True)
class Result:
    """What the driver observed for one step."""
    key: str | None = None     # the key pressed (interrupting a prompt, or waited for)
    completed: bool = False    # a prompt played to its end
    hangup: bool = False       # the callee hung up (or the channel died)


DONE = Result(completed=True)
HANGUP = Result(hangup=True)


@dataclass(frozen=True)
class FlowOptions:
    yes_key: str = "1"
    no_key: str = "2"
    optout_key: str = "9"
    input_timeout_s: float = 5.0
    max_repeats: int = 2
    ask_slot: bool = False
    slots: dict[str, str] = field(default_factory=dict)
    on_machine: str = "hangup"  # hangup | legal


@dataclass
class Outcome:
    outcome: str
    stage: str
    keys: str = ""
    heard: list[str] = field(default_factory=list)  # prompts played to the end, in order
    choice: str | None = None      # consent | refusal | optout
    choice_key: str | None = None
    answered_prompt: str | None = None
    slot: str | None = None


class _Hangup(Exception):
    pass


FlowGen = Generator[Step, Result, Outcome]


def call_flow(opts: FlowOptions, amd_status: str = "") -> FlowGen:
    """One call, from the first prompt to the outcome."""
    state = Outcome(outcome="error", stage="intro")

    def play(prompt: str, keys: str = "") -> Generator[Step, Result, Result]:
        state.stage = prompt
        result = yield Play(prompt, keys)
        if result.hangup:
            raise _Hangup
        if result.completed and result.key is None:
            state.heard.append(prompt)
        if result.key:
            state.keys += result.key
        return result

    def wait_key() -> Generator[Step, Result, str | None]:
        state.stage = "choice" if state.choice is None else state.stage
        waited = yield WaitKey(opts.input_timeout_s)
        if waited.hangup:
            raise _Hangup
        if waited.key:
            state.keys += waited.key
        return waited.key

    def optout(key: str) -> Generator[Step, Result, Outcome]:
        state.choice, state.choice_key = "optout", key
        state.outcome = "opted_out"
        yield OptOutNow(key)
        yield from play("optout_confirm")
        return state

    def finish(outcome: str, *prompts: str) -> Generator[Step, Result, Outcome]:
        """Play prompts with only the opt-out key live; opt-out wins at any moment."""
        for prompt in prompts:
            r = yield from play(prompt, opts.optout_key)
            if r.key == opts.optout_key:
                return (yield from optout(r.key))
        state.outcome = outcome
        return state

    try:
        if amd_status == "MACHINE":
            state.outcome = "machine"
            if opts.on_machine == "legal":  # legal mentions only, never the political message
                yield from play("legal")
            return state
        tries = 0
        while True:
            r = yield from play("intro", DTMF_KEYS)
            key = r.key
            if key is None:
                key = yield from wait_key()
            if key == opts.optout_key:
                return (yield from optout(key))
            if key in (opts.yes_key, opts.no_key):
                state.answered_prompt = "intro"
                state.choice_key = key
                break
            tries += 1
            if tries > opts.max_repeats:
                return (yield from finish("no_input", "legal", "goodbye"))
            r = yield from play("invalid" if key else "no_input", opts.optout_key)
            if r.key == opts.optout_key:
                return (yield from optout(r.key))

        if key == opts.no_key:
            state.choice = "refusal"
            return (yield from finish("declined", "legal", "goodbye"))
        state.choice = "consent"
        for prompt in ("message", "legal"):
            r = yield from play(prompt, opts.optout_key)
            if r.key == opts.optout_key:
                return (yield from optout(r.key))
        state.outcome = "message_played"
        if opts.ask_slot and opts.slots:
            r = yield from play("slot_question", "".join(opts.slots) + opts.optout_key)
            slot_key = r.key if r.key else (yield from wait_key())
            if slot_key == opts.optout_key:  # opt-out wins at any moment, here too
                return (yield from optout(slot_key))
            state.slot = opts.slots.get(slot_key or "")
        return (yield from finish("message_played", "goodbye"))
    except _Hangup:
        state.outcome = _hangup_outcome(state)
        return state


def _hangup_outcome(state: Outcome) -> str:
    """Which outcome a hangup means depends on how far the call went."""
    if state.outcome in ("opted_out", "machine", "message_played"):
        return state.outcome  # already earned: opted out / machine / heard message and legal
    if state.choice == "consent":
        return "message_partial"
    if state.choice == "refusal":
        return "declined" if "legal" in state.heard else "declined_partial"
    if state.stage in ("legal", "goodbye"):  # repeats exhausted, hung up during the legal part
        return "no_input"
    return "hangup_intro"
