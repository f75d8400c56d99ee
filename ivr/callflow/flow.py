"""The call flow as pure logic (sans-IO), in the manner of httpx's Auth.auth_flow.

`call_flow()` is a generator: it yields steps (play this prompt with these keys live, wait for a
key, record an opt-out now, store a final choice now) and receives each step's result. It never touches a socket, a clock
or a database; the FastAGI adapter drives it on a real call, unit tests drive it with a script.

Yes path: `message` then `legal` (the political message ends with the legal mentions, as the
CNIL requires), then `goodbye`. `message_played` means both were heard to the end; from then
on the consent is final, announced (Chosen) and stored before the goodbye plays. A prompt
played while the callee had the line on hold (call waiting: Asterisk sends no audio) was not
heard: the message and the legal mentions (on every path: a refusal's and no input's too) are
played again once the line is back. A consent whose message never was (the hold outlasting
HOLD_WAIT_S, a hangup meanwhile) is `error`, retried; a refusal stays a refusal,
`declined_partial` (its legal mentions unheard).
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

from ivr.callflow.outcomes import final_at

DTMF_KEYS = "0123456789*#"
HOLD_WAIT_S = 60.0  # a callee who put us on hold (call waiting) has this long to come back
HELD = "held"  # the stage prefix of a consent whose message a hold kept unheard
# A prompt played into a hold this many times is given up on (HeldOut): a phone toggling hold
# would otherwise keep the call, and a channel of the node's cap, without end.
HOLD_REPLAYS = 3


@dataclass(frozen=True)
class Play:
    prompt: str
    keys: str = ""  # keys that interrupt the prompt ("" = none)
    # A question: the WaitKey that follows a prompt played to its end, for this long. The
    # driver may listen in the same breath (AGI GET OPTION): a key pressed between two AGI
    # commands is lost, and people answer just as the question ends.
    listen_s: float = 0.0


@dataclass(frozen=True)
class WaitKey:
    timeout_s: float


@dataclass(frozen=True)
class OptOutNow:
    """Put the number on the opposition list at once, before the call goes on."""
    key: str


@dataclass(frozen=True)
class Chosen:
    """A choice just became final (outcomes.final_at: a refusal or an opposition as made, a
    consent once its message and legal mentions were heard): store it now, before the call
    goes on, since the outcome comes only at the end and a controller killed meanwhile would
    lose it. `reached` is what a hangup at this point would give."""
    reached: "Outcome"


@dataclass(frozen=True)
class WaitUnhold:
    """The last prompt played into a hold: wait until the line is back. Its result: completed
    once back, hangup if the call ended, nothing if still held after timeout_s."""
    timeout_s: float


Step = Play | WaitKey | OptOutNow | Chosen | WaitUnhold


@dataclass(frozen=True)
class Result:
    """What the driver observed for one step."""
    key: str | None = None     # the key pressed (interrupting a prompt, or waited for)
    completed: bool = False    # a prompt played to its end
    hangup: bool = False       # the callee hung up (or the channel died)
    held: bool = False         # the line was on hold during (part of) the prompt: not heard
    not_stored: bool = False   # OptOutNow: the store had not taken the opposition in time


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
    hold_wait_s: float | None = None  # None: HOLD_WAIT_S

    @property
    def hold_wait(self) -> float:
        """How long a callee who put us on hold has to come back (hold_wait_s or the default)."""
        return self.hold_wait_s or HOLD_WAIT_S


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


class _HeldOut(Exception):
    """The line stayed on hold past hold_wait_s: the consent's message was not heard."""


FlowGen = Generator[Step, Result, Outcome]


class _Call:
    """One call's steps. Each method is a sub-generator that shares the call's state."""

    def __init__(self, opts: FlowOptions) -> None:
        self.opts = opts
        self.state = Outcome(outcome="error", stage="intro")
        self.prompt = "intro"  # the prompt playing, or waited on once played
        self.told: str | None = None  # the last final choice announced (Chosen)
        self.held_out: str | None = None  # the prompt a hold kept unheard, the call then cut

    def tell(self) -> Generator[Step, Result, None]:
        """Announce a choice that became final since the last step, once, as a hangup now
        leaves it: a consent once message_played, before the goodbye (or the slot question)."""
        state = self.state
        if state.choice == self.told:
            return
        outcome = _hangup_outcome(state)
        if final_at(state.choice, outcome):
            self.told = state.choice
            # its result carries nothing
            yield Chosen(replace(state, heard=list(state.heard), outcome=outcome))

    def play(self, prompt: str, keys: str = "",
             listen_s: float = 0.0) -> Generator[Step, Result, Result]:
        state = self.state
        state.stage = self.prompt = prompt
        yield from self.tell()
        result = yield Play(prompt, keys, listen_s)
        if result.hangup:
            self.held_out = prompt if result.held else None
            raise _Hangup
        if result.completed and result.key is None and not result.held:
            state.heard.append(prompt)
        if result.key:
            state.keys += result.key
        return result

    def until_heard(self, prompt: str, keys: str) -> Generator[Step, Result, Result]:
        """Play `prompt` until it is heard: one played into a hold plays again once the line
        is back (a key pressed ends it as ever), HOLD_REPLAYS holds at most."""
        holds = 0
        while True:
            result = yield from self.play(prompt, keys)
            if result.key or not result.held:
                return result
            holds += 1
            back = yield WaitUnhold(self.opts.hold_wait)
            if back.hangup or not back.completed or holds >= HOLD_REPLAYS:
                self.held_out = prompt
                raise _Hangup if back.hangup else _HeldOut

    def wait_key(self) -> Generator[Step, Result, str | None]:
        state = self.state
        state.stage = "choice" if state.choice is None else state.stage
        yield from self.tell()
        waited = yield WaitKey(self.opts.input_timeout_s)
        if waited.hangup:
            raise _Hangup
        if waited.key:
            state.keys += waited.key
        return waited.key

    def optout(self, key: str) -> Generator[Step, Result, Outcome]:
        # The proof names the prompt the key cut (or that was waited on), not an earlier answer
        self.state.choice, self.state.choice_key = "optout", key
        self.state.answered_prompt = self.prompt
        self.state.outcome = "opted_out"
        stored = yield OptOutNow(key)
        if stored is not None and stored.not_stored:  # still queued: the written route, owed
            yield from self.until_heard("legal", "")
        else:  # confirmed only once it is in the store
            yield from self.play("optout_confirm")
        return self.state

    def finish(self, outcome: str, *prompts: str) -> Generator[Step, Result, Outcome]:
        """Play prompts with only the opt-out key live; opt-out wins at any moment."""
        for prompt in prompts:
            # The legal mentions are owed on every path: played into a hold, again once back
            step = self.until_heard if prompt == "legal" else self.play
            r = yield from step(prompt, self.opts.optout_key)
            if r.key == self.opts.optout_key:
                return (yield from self.optout(r.key))
        self.state.outcome = outcome
        return self.state

    def ask(self) -> Generator[Step, Result, str | Outcome]:
        """The intro and its consent question, repeated; the key chosen, or the outcome."""
        opts, tries = self.opts, 0
        while True:
            r = yield from self.play("intro", DTMF_KEYS, opts.input_timeout_s)
            key = r.key if r.key is not None else (yield from self.wait_key())
            if key == opts.optout_key:
                return (yield from self.optout(key))
            if key in (opts.yes_key, opts.no_key):
                self.state.answered_prompt, self.state.choice_key = "intro", key
                return key
            tries += 1
            if tries > opts.max_repeats:
                return (yield from self.finish("no_input", "legal", "goodbye"))
            # The re-prompt hears a choice too: a 1 or 2 that cuts it answers the intro
            r = yield from self.play("invalid" if key else "no_input",
                                     opts.yes_key + opts.no_key + opts.optout_key)
            if r.key == opts.optout_key:
                return (yield from self.optout(r.key))
            if r.key in (opts.yes_key, opts.no_key):
                self.state.answered_prompt, self.state.choice_key = "intro", r.key
                return r.key

    def consent(self) -> Generator[Step, Result, Outcome]:
        """Yes: the message, which ends with the legal mentions, then the time slot."""
        opts, state = self.opts, self.state
        state.choice = "consent"
        for prompt in ("message", "legal"):
            r = yield from self.until_heard(prompt, opts.optout_key)
            if r.key == opts.optout_key:
                return (yield from self.optout(r.key))
        state.outcome = "message_played"  # final now: the next step stores it (tell, Chosen)
        if opts.ask_slot and opts.slots:
            r = yield from self.play("slot_question", "".join(opts.slots) + opts.optout_key,
                                     opts.input_timeout_s)
            slot_key = r.key if r.key else (yield from self.wait_key())
            if slot_key == opts.optout_key:  # opt-out wins at any moment, here too
                return (yield from self.optout(slot_key))
            state.slot = opts.slots.get(slot_key or "")
        return (yield from self.finish("message_played", "goodbye"))


def call_flow(opts: FlowOptions, amd_status: str = "") -> FlowGen:
    """One call, from the first prompt to the outcome."""
    call = _Call(opts)
    try:
        if amd_status == "MACHINE":
            call.state.outcome = "machine"
            if opts.on_machine == "legal":  # legal mentions only, never the political message
                # AMD may take a person for a machine: the opposition key still works
                r = yield from call.play("legal", opts.optout_key)
                if r.key == opts.optout_key:
                    return (yield from call.optout(r.key))
            return call.state
        key = yield from call.ask()
        if isinstance(key, Outcome):
            return key
        if key == opts.no_key:
            call.state.choice = "refusal"
            return (yield from call.finish("declined", "legal", "goodbye"))
        return (yield from call.consent())
    except _Hangup:
        call.state.outcome = _hangup_outcome(call.state)
        if call.held_out and call.state.outcome == "message_partial":
            _held_error(call.state, call.held_out)
        elif call.held_out == "legal":  # a refusal or no input, hung up while the line was
            call.state.stage = f"{HELD}-legal"  # held: its mentions unheard, as _HeldOut says
        return call.state
    except _HeldOut:
        if call.state.choice == "consent":
            _held_error(call.state, call.held_out or call.prompt)
        else:  # a refusal or no input stands, its legal mentions unheard (declined_partial)
            call.state.outcome = _hangup_outcome(call.state)
            call.state.stage = f"{HELD}-{call.held_out or call.prompt}"
        return call.state


def _held_error(state: Outcome, prompt: str) -> None:
    """A consent whose message or legal mentions a hold kept unheard: not kept, `error` (and
    retried, outcomes.kept_after_fault), like a consent a fault cut off."""
    state.outcome, state.stage = "error", f"{HELD}-{prompt}"


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
