"""FastAGI handler `ivr`: drives the pure call flow on a live channel and stores the outcome."""
from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from ivr.callflow import outcomes
from ivr.callflow.agi_drive import ChoiceWatch, FlowAborted, PromptUnplayable, drive
from ivr.callflow.agi_gate import Refused, SessionGate
from ivr.callflow.late_causes import StoredCauses
from ivr.callflow.opposed import OVERLAP_S, Opposed
from ivr.telephony.contract import ARG_AMD_STATUS, VAR_DONE, VAR_HANGUP_CAUSE
from ivr.telephony.fastagi import AgiHangup, AgiRequest
from ivr.telephony.log_budget import LogBudget
from ivr.callflow.flow import FlowOptions, Outcome, call_flow
from ivr.prompts.live import PromptVersion
from ivr.store.safe_writes import COMMIT_WAIT_S, Commit
from ivr.store.sqlite import CallResult, Store

log = logging.getLogger(__name__)
# Outcomes of a call cut short (from the outcome table): if the PBX (not the callee) did it,
# outcomes.kept_after_fault says whether the choice made stands or it is `error`, retried.
CUT_SHORT = outcomes.CUT_SHORT
RUN_HANGUP = outcomes.RUN_HANGUP  # the stage's prefix of a call the run hung up
# The stage of a call whose number was put on the opposition list while it rang (after the
# claim's check): hung up on answer, nothing played, `opted_out`, no proof row, no retry.
OPPOSED_BEFORE_ANSWER = "opposed-before-answer"
# The stage of a session the controller cut off past its limit (deadline.session_limit_s)
SESSION_LIMIT = "session-limit"


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
                 causes: StoredCauses | None = None,
                 cut_by_run: Callable[[int], bool] = lambda call_id: False,
                 opposed: Opposed | None = None, commit: Commit | None = None,
                 session_limit_s: float = math.inf) -> None:
        self.store = store
        self.log_budget = LogBudget()  # a forger's refused sessions: 20 lines a minute
        # Past it a session is cut off (a stalled one kept the callee in silence, the line
        # billed, until they hung up): its outcome stored, the dialplan's failsafe played.
        self.session_limit_s = session_limit_s
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
        # What each outcome write stores as the hangup cause, and the Hangups that come while
        # it is queued: the dialer then skips the late Hangup's write of that same cause.
        self.causes = causes
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
            # Closed unserved, never hung up: a real call refused here (answered before a
            # restarted controller adopted it, a channel of an attempt given up) takes the
            # dialplan's failsafe, whose legal mentions say who calls and how to object; a
            # HANGUP cut the person off in silence. A forger's session loses nothing by it.
            if (more := self.log_budget.take("ivr-refused")) is not None:
                log.warning("FastAGI ivr: session refused from %r: %s; closed unserved (a "
                            "real call takes the dialplan's failsafe)%s",
                            req.writer.get_extra_info("peername"), exc, more)
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
                     hashes: Mapping[str, str], where: str = "controller") -> CallResult:
        """A controller fault cut the call: the choice made before it is kept (after_fault)."""
        kept = after_fault(reached, where, where) if reached else None
        if kept is None or kept.outcome == "error":
            return CallResult(outcome="error", stage=where, keys="", heard={})
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
        limit = asyncio.timeout(self.session_limit_s if math.isfinite(self.session_limit_s)
                                else None)
        try:
            async with limit:
                outcome, hung_up = await drive(call_flow(self.opts, amd_status), req,
                                               self._optout(call), version.sounds, watch,
                                               lambda: getattr(flight, "hold", None),
                                               version.samples)
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
        except Exception as exc:  # a controller fault is recorded as `error`, never lost,
            if isinstance(exc, TimeoutError) and limit.expired():  # but for a choice made
                log.error("call %s: its IVR session ran past %.0f s, longer than any call the "
                          "flow allows: cut off (a stalled session); the callee hears the "
                          "legal mentions from the dialplan's failsafe", call_id,
                          self.session_limit_s)
                result = self._after_fault(watch.last, amd_status, version.hashes,
                                           SESSION_LIMIT)
            else:
                log.exception("call %s failed in the controller", call_id)
                result = self._after_fault(watch.last, amd_status, version.hashes)
        self._store(call, call_id, result)

    def _store(self, call: dict, call_id: int, result: CallResult) -> None:
        """The call's outcome, through the writer (never lost), with its retry time."""
        now, retry = self.clock(), self.retry_at(call, result.outcome)

        channel = str(call.get("channel_id") or "")
        causes = self.causes if channel else None
        held: list[str | None] = []  # taken once: a batch sent again runs record() again

        def record() -> None:
            stored = self.store.finish_answered(call_id, result, now, retry)
            if stored is None:
                log.warning("call %s already had its outcome; IVR result %s not stored",
                            call_id, result.outcome)
            if causes is not None:
                # the cause as stored (an earlier Hangup's is kept), not the one given; a
                # Hangup held meanwhile is written here only if it differs (late_causes.py)
                if not held:
                    held.append(causes.recorded(channel, stored))
                if held[0] is not None:
                    self.store.set_hangup_cause(call_id, held[0])
        if causes is not None:
            causes.queued(channel)
        self.write(record)
