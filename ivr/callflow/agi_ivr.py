"""FastAGI handler `ivr`: drives the pure call flow on a live channel and stores the outcome."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ivr.callflow import outcomes
from ivr.callflow.agi_gate import Refused, SessionGate, hang_up_refused
from ivr.callflow.opposed import OVERLAP_S, Opposed
from ivr.telephony.contract import ARG_AMD_STATUS, SOUNDS_DIR, VAR_DONE, VAR_HANGUP_CAUSE
from ivr.telephony.fastagi import CHANNEL_UP, AgiHangup, AgiRequest
from ivr.callflow.flow import (DONE, HANGUP, Chosen, FlowGen, FlowOptions, OptOutNow, Outcome, Play,
                               Result, WaitKey, WaitUnhold, call_flow)
from ivr.prompts.live import PromptVersion
from ivr.store.safe_writes import COMMIT_WAIT_S, Commit
from ivr.store.sqlite import CallResult, Store

if TYPE_CHECKING:  # the dialer's view of a call's hold (AMI Hold/Unhold)
    from ivr.campaign.nodes import LineHold
Line = Callable[[], "LineHold | None"]  # the call's hold, None while never held


def _no_hold() -> LineHold | None:
    return None

log = logging.getLogger(__name__)
# Outcomes of a call cut short (from the outcome table): if the PBX (not the callee) did it,
# outcomes.kept_after_fault says whether the choice made stands or it is `error`, retried.
CUT_SHORT = outcomes.CUT_SHORT
RUN_HANGUP = outcomes.RUN_HANGUP  # the stage's prefix of a call the run hung up
# The stage of a call whose number was put on the opposition list while it rang (after the
# claim's check): hung up on answer, nothing played, `opted_out`, no proof row, no retry.
OPPOSED_BEFORE_ANSWER = "opposed-before-answer"


class PromptUnplayable(Exception):
    def __init__(self, message: str, sound: str) -> None:
        super().__init__(message)
        self.sound = sound  # the file Asterisk could not play


class FlowAborted(Exception):
    """The controller failed mid-flow; `outcome` is how far the call had gone (its choice)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"flow aborted at {outcome.stage}")
        self.outcome = outcome


# Q.850 causes of a call the network dropped, not the callee: 34 no circuit, 38 network out of
# order, 41 temporary failure, 42 switching equipment congestion, 44 requested circuit not
# available, 102 recovery on timer expiry. A callee hanging up gives 16 (or 31).
NETWORK_CUT_CAUSES = frozenset({"34", "38", "41", "42", "44", "102"})


def after_fault(outcome: Outcome, where: str, error_stage: str) -> Outcome:
    """A fault (`where`: pbx, controller) cut the call: the outcome table says whether the
    outcome reached so far is kept (a choice made), with the fault in its stage, or becomes
    `error` at `error_stage` (retried)."""
    if outcomes.kept_after_fault(outcome.outcome):
        outcome.stage = f"{where}-{outcome.stage}"
    else:
        outcome.outcome, outcome.stage = "error", error_stage
    return outcome


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


async def _play(req: AgiRequest, step: Play, sound: str | None = None,
                line: Line = _no_hold) -> Result:
    """Play one prompt: `sound`, its content-addressed file, else the plain ivr/<key>. A
    prompt that overlapped a hold (held at its start or end, or a Hold meanwhile) reads as
    `held`: Asterisk played it into a line sending the callee nothing."""
    sound = sound or f"{SOUNDS_DIR}/{step.prompt}"
    before = line()
    holds, was_held = (before.holds, before.held) if before is not None else (0, False)
    played = await req.stream_file(sound, step.keys)
    after = line()  # made at the first Hold: maybe during this prompt
    held = after is not None and (was_held or after.held or after.holds != holds)
    if played.failed:
        # A hangup, or a prompt Asterisk cannot play: ask the channel which.
        if await req.channel_status() == CHANNEL_UP:
            raise PromptUnplayable(f"Asterisk could not play {sound}: check that the prompts "
                                   "are installed and Asterisk's user can read them and "
                                   "their folders", sound)
        return Result(hangup=True, held=held)
    if played.digit:
        return Result(key=played.digit)
    if played.played_nothing:
        raise PromptUnplayable(f"{sound} played nothing (missing file?)", sound)
    return Result(completed=True, held=True) if held else DONE


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
                watch: ChoiceWatch | None = None, line: Line = _no_hold) -> tuple[Outcome, bool]:
    """Run the flow generator against a live AGI channel. Returns the outcome and whether
    the flow ended on a hangup. `sounds`: prompt key -> the file to play (its version);
    `watch`: told each choice as it becomes final (outcomes.final_at); `line`: the
    call's hold as the dialer's AMI events keep it."""
    sounds = sounds or {}
    try:
        step = next(gen)
    except StopIteration as stop:  # e.g. a machine, with nothing to play
        return stop.value, False
    while True:
        try:
            if isinstance(step, Play):
                result = await _play(req, step, sounds.get(step.prompt), line)
            elif isinstance(step, WaitUnhold):
                result = await _wait_unhold(line(), step)
            elif isinstance(step, WaitKey):
                result = await _wait(req, step)
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


async def served(req: AgiRequest) -> None:
    """Tell the dialplan the flow ran to its end: without VAR_DONE it takes its failsafe, since
    a session accepted then closed unserved (a peer refused, a crash) gives AGISTATUS SUCCESS."""
    try:
        await req.set_variable(VAR_DONE, "1")
    except AgiHangup:
        pass  # the callee hung up meanwhile: the dialplan ends without reading it
    except Exception as exc:  # the outcome stands; the callee gets the failsafe's end
        log.warning("could not tell the dialplan the call was served: %s", exc)


async def hangup_cause(req: AgiRequest) -> str:
    """The channel's Q.850 cause, readable in dead-AGI mode. A callee's hangup gives 16; a
    PBX tearing calls down (shutdown, restart) leaves 0."""
    if req.lost:
        return ""
    try:
        return await req.get_variable(VAR_HANGUP_CAUSE) or ""
    except AgiHangup:
        return ""


class IvrHandler:
    """Route `ivr` (contract.ROUTE_IVR): ARG_CALL_ID is the CALL_ID (calls.id) written before
    the Originate, ARG_AMD_STATUS the AMDSTATUS of the dialplan's AMD(), ARG_TOKEN the
    attempt's token. `gate` admits a session (agi_gate.py); its `active` set is the dialer's."""

    def __init__(self, store: Store, hashes: dict[str, str], opts: FlowOptions,
                 clock: Callable[[], datetime],
                 retry_at: Callable[[dict, str], datetime | None] = lambda call, outcome: None,
                 on_finished: Callable[[int], None] | None = None,
                 write: Callable[[Callable[[], object]], None] = lambda fn: fn(),
                 on_pbx_fault: Callable[[], None] = lambda: None,
                 pbx_went_down: Callable[..., Awaitable[bool]] | None = None, *,
                 gate: SessionGate, sounds: Mapping[str, str] | None = None,
                 versions: Callable[[], PromptVersion] | None = None,
                 on_recorded: Callable[[str, str], None] | None = None,
                 cut_by_run: Callable[[int], bool] = lambda call_id: False,
                 opposed: Opposed | None = None, commit: Commit | None = None) -> None:
        self.store = store
        self.hashes = hashes
        # prompt key -> the content-addressed file of exactly the version `hashes` records
        self.sounds = dict(sounds or {})
        # The version a call starting now plays (prompts/live.py); each call keeps its own.
        self.versions = versions or (lambda: PromptVersion(self.hashes, self.sounds))
        self.opts = opts
        self.clock = clock
        self.retry_at = retry_at
        self.on_finished = on_finished
        self.write = write  # outcomes go through the dialer's SafeWriter: never lost
        # An opposition too, and the callee is told it is recorded once it is (committed)
        self.commit = commit or self._written
        self.on_pbx_fault = on_pbx_fault
        self.pbx_went_down = pbx_went_down
        self.gate = gate
        self.active = gate.active  # read by the dialer
        # Told (channel_id, hangup cause) once an outcome is in the store: the dialer then
        # skips the late Hangup's write of that same cause. May run in a worker thread.
        self.on_recorded = on_recorded
        # Did the run itself hang this call up (hard stop, drain timeout)? Then the hangup
        # is not the callee's: the dialer's mark, set before the hang-up left.
        self.cut_by_run = cut_by_run
        # Numbers opposed since the run began, kept by its tick (RunControl): read on answer
        self.opposed = opposed if opposed is not None else \
            Opposed(OVERLAP_S if getattr(store, "remote", False) else 0.0)

    async def _pbx_fault(self, req: AgiRequest, node: str | None) -> bool:
        """Cause 0 means a PBX teardown (shutdown, restart) or a SIP BYE that carried no
        Reason header. Only the PBX going away over AMI tells them apart: the call's own node
        (`node`), as node_events asks; another node of the pool restarting just now says
        nothing of a callee hanging up here."""
        if req.lost:
            return True
        # Let go of the channel first: a shutting-down Asterisk waits for its AGIs to end.
        req.writer.close()
        return await self.pbx_went_down(node=node) if self.pbx_went_down else False

    async def _written(self, fn: Callable[[], object], within_s: float) -> bool:
        """No writer that waits (tests): handed to `write`, taken as stored."""
        self.write(fn)
        return True

    def _optout(self, call: dict) -> Callable[[str], Awaitable[bool]]:
        async def record(key: str) -> bool:
            now = self.clock()
            return await self.commit(lambda: self.store.add_optout(
                call["number"], "phone-key", now, call["campaign"]), COMMIT_WAIT_S)
        return record

    def _choice(self, call_id: int, amd_status: str,
                hashes: Mapping[str, str]) -> Callable[[Outcome], None]:
        def record(reached: Outcome) -> None:
            at, proof = self.clock(), self._result(reached, amd_status, "", hashes)
            self.write(lambda: self.store.record_choice(call_id, proof, at))
        return record

    async def __call__(self, req: AgiRequest) -> None:
        try:
            call = await self.gate.admit_async(req.headers)  # marks the call active
        except Refused as exc:  # a forgery, a replay, a stale session: it writes nothing
            log.warning("FastAGI ivr: session refused from %r: %s; hanging up",
                        req.writer.get_extra_info("peername"), exc)
            await hang_up_refused(req)
            return
        call_id = int(call["id"])
        try:
            await self._run(req, call, call_id)
        finally:
            self.active.discard(call_id)
        if self.on_finished:
            self.on_finished(call_id)

    @staticmethod
    def _fault_matters(outcome: Outcome) -> bool:
        """Cut short, or a choice made: a PBX cut changes the outcome or marks the stage."""
        return outcome.outcome in CUT_SHORT or outcome.choice is not None

    @staticmethod
    def _result(outcome: Outcome, amd_status: str, cause: str,
                hashes: Mapping[str, str]) -> CallResult:
        return CallResult(
            outcome=outcome.outcome, stage=outcome.stage, keys=outcome.keys,
            heard={p: hashes.get(p, "") for p in outcome.heard},
            choice=outcome.choice, choice_key=outcome.choice_key,
            answered_prompt=outcome.answered_prompt,
            answered_sha256=hashes.get(outcome.answered_prompt or ""),
            slot=outcome.slot, amd_status=amd_status or None, hangup_cause=cause or None)

    def _after_fault(self, reached: Outcome | None, amd_status: str,
                     hashes: Mapping[str, str]) -> CallResult:
        """A controller fault cut the call: the choice made before it is kept (after_fault)."""
        kept = after_fault(reached, "controller", "controller") if reached else None
        if kept is None or kept.outcome == "error":
            return CallResult(outcome="error", stage="controller", keys="", heard={})
        return self._result(kept, amd_status, "", hashes)

    def _opposed(self, call: dict) -> bool:
        """Put on the opposition list while it rang? The claim checked it; an objection made
        since (`ivr optout add`, the console, the opposition line) takes effect at once. The
        run's tick keeps the recent ones in `opposed` (Opposed): a look-up, no I/O."""
        number = str(call.get("number") or "")
        return bool(number and self.opposed.batches) and \
            self.store.number_hash(number) in self.opposed

    async def _hang_up_opposed(self, req: AgiRequest, call: dict, call_id: int,
                               amd_status: str) -> None:
        """Nothing is played: the dialplan hangs up (normal clearing, not its failsafe)."""
        log.info("call %s: number opposed while it rang; hung up on answer", call_id)
        await served(req)
        self._store(call, call_id, CallResult(
            outcome="opted_out", stage=OPPOSED_BEFORE_ANSWER, keys="", heard={},
            amd_status=amd_status or None))

    async def _run(self, req: AgiRequest, call: dict, call_id: int) -> None:
        answered = self.clock()
        self.write(lambda: self.store.mark_answered(call_id, answered))
        amd_status = req.headers.get(ARG_AMD_STATUS, "")  # AMDSTATUS, "" when AMD is off
        if self._opposed(call):
            await self._hang_up_opposed(req, call, call_id, amd_status)
            return
        version = self.versions()  # this call plays and records this version to its end
        watch = ChoiceWatch(self._choice(call_id, amd_status, version.hashes))
        # The flight's hold, read at each prompt: a dict look-up, no AMI or AGI command
        flight = self.gate.flights.get(call_id)
        try:
            outcome, hung_up = await drive(call_flow(self.opts, amd_status), req,
                                           self._optout(call), version.sounds, watch,
                                           lambda: getattr(flight, "hold", None))
            if not hung_up:
                await served(req)
            cause = await hangup_cause(req) if hung_up else ""
            if hung_up and self._fault_matters(outcome) and self.cut_by_run(call_id):
                # The run hung up: a choice made stays, a cut consent or intro is `error`,
                # retried so the person hears the message (outcomes.kept_after_run_hangup).
                outcome = after_fault(outcome, RUN_HANGUP, f"{RUN_HANGUP}-{outcome.stage}")
            elif hung_up and cause in ("", "0") and self._fault_matters(outcome) and \
                    await self._pbx_fault(req, getattr(flight, "node", None)):
                # The PBX or the link ended the call, not the callee: a fault. A choice made
                # stays; anything else is `error`, retried (outcomes.kept_after_fault).
                outcome = after_fault(outcome, "pbx", f"pbx-{outcome.stage}")
                cause = cause or "0"  # the PBX's cut, not a callee's hangup (16)
                self.on_pbx_fault()
            elif hung_up and cause in NETWORK_CUT_CAUSES and self._fault_matters(outcome):
                # The carrier's network dropped the call (a BYE with Reason Q.850 41, 38...),
                # not the callee: the same fault for the person, `error`, retried. The PBX is
                # fine: no hold of its node. The cause stays stored as given.
                outcome = after_fault(outcome, "pbx", f"pbx-{outcome.stage}")
            result = self._result(outcome, amd_status, cause, version.hashes)
        except FlowAborted as exc:  # the choice made before the fault is kept
            if isinstance(exc.__cause__, PromptUnplayable):  # the admin's to fix: one line,
                log.error("call %s: %s", call_id, exc.__cause__)  # not 18 per call
                # Told on the dialer's flight, read when the call ends (node_guard.py): a node
                # whose callees hear silence is taken out, the last one stops the run.
                if flight is not None:
                    flight.prompt_failed = exc.__cause__.sound
            else:
                log.exception("call %s failed in the controller", call_id)
            result = self._after_fault(exc.outcome, amd_status, version.hashes)
        except Exception:  # a controller fault is recorded as `error`, never lost, but for
            log.exception("call %s failed in the controller", call_id)  # a choice made
            result = self._after_fault(watch.last, amd_status, version.hashes)
        self._store(call, call_id, result)

    def _store(self, call: dict, call_id: int, result: CallResult) -> None:
        """The call's outcome, through the writer (never lost), with its retry time."""
        now, retry = self.clock(), self.retry_at(call, result.outcome)

        def record() -> None:
            stored = self.store.finish_answered(call_id, result, now, retry)
            if stored is None:
                log.warning("call %s already had its outcome; IVR result %s not stored",
                            call_id, result.outcome)
            elif self.on_recorded and call.get("channel_id"):
                # the cause as stored (an earlier Hangup's is kept), not the one given: the
                # late Hangup is skipped only when it would change nothing (StoredCauses)
                self.on_recorded(str(call["channel_id"]), stored)
        self.write(record)
