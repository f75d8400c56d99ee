"""FastAGI handler `callback`: the inbound opposition line, keyed by the caller's number."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ivr.callflow.flow import FlowOptions
from ivr.compliance.prompt_legal import CALLBACK_CONFIRM_KEY, CALLBACK_NOTICE
from ivr.telephony.agi_auth import secret_matches
from ivr.telephony.contract import ARG_CALLBACK_SECRET, SOUNDS_DIR, VAR_DONE
from ivr.telephony.fastagi import CHANNEL_UP, HEADER_CALLERID, AgiHangup, AgiRequest
from ivr.telephony.log_budget import LogBudget
from ivr.numbers import e164
from ivr.store.safe_writes import COMMIT_WAIT_S, Commit
from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
CONFIRM_KEY = CALLBACK_CONFIRM_KEY  # what the notice asks for (`ivr check` reads it too)
NOTICES = 2  # a caller who pressed another key, or none, is asked once more
VIA_CALLBACK = "phone-callback"  # optouts.via of the line (its failsafe's journal too)


async def _commit_now(fn: Callable[[], object], within_s: float) -> bool:
    """Straight to the store (tests, and callers with no writer): in it once fn returns."""
    fn()
    return True


def caller_e164(raw: str, default_region: str) -> str | None:
    """The caller ID as E.164, or None when it is withheld or not a valid number. Some
    carriers present an international number without its '+' (262692123456 for Réunion), or
    with the SIP URI's user parameters (+33612345678;cpc=ordinary, 0612345678;npdi): cut."""
    raw = (raw or "").split(";", 1)[0].strip()
    if not raw or raw.lower() in ("unknown", "anonymous", "<unknown>"):
        return None
    number = e164(raw, default_region)
    if number is None and raw.isdigit() and not raw.startswith("0"):
        number = e164("+" + raw, default_region)
    return number


class CallbackHandler:
    """Route `callback` (contract.ROUTE_CALLBACK), keyed by the caller ID. Anyone who reaches
    the FastAGI port can claim any caller ID, so a session must carry `secret` (the dialplan's
    IVR_CALLBACK_SECRET) in ARG_CALLBACK_SECRET; otherwise it writes nothing and sends nothing
    (a real caller then gets the dialplan's failsafe, which asks for the key and journals)."""

    def __init__(self, store: Store, default_region: str, clock: Callable[[], datetime],
                 timeout_s: float = 5.0, commit: Commit | None = None, *,
                 secret: str, optout_key: str = FlowOptions().optout_key) -> None:
        self.store = store
        self.secret = secret
        self.log_budget = LogBudget()  # a forger's sessions: 20 lines a minute
        # Key 1, as the notice asks, and the opt-out key every outbound intro teaches ("9 at
        # any moment"): a caller who presses it here means the same thing.
        self.keys = CONFIRM_KEY + optout_key.replace(CONFIRM_KEY, "")
        # Through the run's SafeWriter (`committed`): a locked store loses nothing, and the
        # caller hears the confirmation only once the opposition is in the store.
        self.commit = commit or _commit_now
        self.region = default_region
        self.clock = clock
        self.timeout_ms = int(timeout_s * 1000)

    async def __call__(self, req: AgiRequest) -> None:
        if await self._serve(req):
            # Only now: a session refused or cut before this (controller gone, timeout) leaves
            # the dialplan to its failsafe, the legal mentions, played again if need be.
            await req.set_variable(VAR_DONE, "1")

    async def _serve(self, req: AgiRequest) -> bool:
        """Run the line; True once the caller has heard what it owes them."""
        if not secret_matches(req.headers.get(ARG_CALLBACK_SECRET, ""), self.secret):
            # Nothing is written, nothing is sent: the session is closed unserved. A real
            # caller reaches this when the secret in [globals] and the controller's differ
            # (changed without `dialplan reload`): the dialplan's failsafe then asks for the
            # key itself and journals them (optout_journal), and raises its alarm. Playing the
            # legal mentions here and setting IVR_DONE skipped that failsafe: no one could
            # object by key on the line. A local forger gets nothing either.
            if (more := self.log_budget.take("callback-secret")) is not None:
                log.error("FastAGI callback: session without the callback secret from %r: "
                          "nothing recorded, the dialplan's failsafe serves the caller; check "
                          "that IVR_CALLBACK_SECRET matches [globals] and run `dialplan "
                          "reload`%s", req.writer.get_extra_info("peername"), more)
            return False
        number = caller_e164(req.headers.get(HEADER_CALLERID, ""), self.region)
        if number is None:  # nothing to key the opposition on: give the written route
            return not (await req.stream_file(f"{SOUNDS_DIR}/legal")).failed
        try:
            heard, confirmed = await self._ask(req)
        except AgiHangup:
            return False
        if not confirmed:
            log.info("callback from %s ended without confirmation", "a caller")
            return heard  # a notice Asterisk could not play: the failsafe's legal mentions
        now = self.clock()
        if await self.commit(lambda: self.store.add_optout(number, VIA_CALLBACK, now),
                             COMMIT_WAIT_S):
            await req.stream_file(f"{SOUNDS_DIR}/optout_confirm")
            return True
        # Not in the store yet (it is away): the opposition stays queued and is written when
        # the store is back, but the caller is not told it is recorded; they hear the written
        # route to object instead, which holds whatever happens to the queue.
        log.warning("opposition line: the store did not take an opposition within %.0f s; it "
                    "stays queued, and the caller heard the legal mentions instead of the "
                    "confirmation", COMMIT_WAIT_S)
        return not (await req.stream_file(f"{SOUNDS_DIR}/legal")).failed

    async def _ask(self, req: AgiRequest) -> tuple[bool, bool]:
        """Whether the caller heard the line out, and whether they confirmed: the notice, once
        more if need be, then the legal mentions (the written way to object) to one who did
        not confirm; 1 or the opt-out key confirms at any of these moments."""
        for _ in range(NOTICES):
            heard, key = await self._confirmation(req)
            if not heard:  # the failsafe's legal mentions follow
                return False, False
            if key and key in self.keys:
                return True, True
        legal = await req.stream_file(f"{SOUNDS_DIR}/legal", self.keys)
        return not legal.failed, bool(legal.digit and legal.digit in self.keys)

    async def _confirmation(self, req: AgiRequest) -> tuple[bool, str | None]:
        """Whether the notice played, and the key pressed during it or within timeout_ms
        after it: one command (get_option), since a key between two is lost."""
        notice = await req.get_option(f"{SOUNDS_DIR}/{CALLBACK_NOTICE}", self.keys,
                                      self.timeout_ms)
        if notice.failed:
            # Not a hangup: the notice is missing and no caller can confirm (`ivr check` refuses
            # a campaign without it); an error, since the caller leaves having heard nothing.
            if await req.channel_status() == CHANNEL_UP:
                log.error("opposition line: Asterisk could not play %s/callback_notice, so no "
                          "opposition can be recorded: add prompts.items.callback_notice, then "
                          "`ivr prompts build`", SOUNDS_DIR)
            return False, None
        return True, notice.digit  # a hangup while listening: the next command tells
