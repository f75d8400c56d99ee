"""FastAGI handler `callback`: the inbound opposition line, keyed by the caller's number."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ivr.telephony.fastagi import AgiRequest
from ivr.numbers import e164
from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
CONFIRM_KEY = "1"


def caller_e164(raw: str, default_region: str) -> str | None:
    """The caller ID as E.164, or None when it is withheld or not a valid number."""
    if not raw or raw.lower() in ("unknown", "anonymous", "<unknown>"):
        return None
    return e164(raw, default_region)


class CallbackHandler:
    def __init__(self, store: Store, default_region: str, clock: Callable[[], datetime],
                 timeout_s: float = 5.0,
                 write: Callable[[Callable[[], object]], None] = lambda fn: fn()) -> None:
        self.store = store
        self.write = write  # through the run's SafeWriter: a locked store loses nothing
        self.region = default_region
        self.clock = clock
        self.timeout_ms = int(timeout_s * 1000)

    async def __call__(self, req: AgiRequest) -> None:
        number = caller_e164(req.headers.get("agi_callerid", ""), self.region)
        if number is None:  # nothing to key the opposition on: give the written route
            await req.send_command('STREAM FILE ivr/legal ""')
            return
        res = await req.send_command(f'STREAM FILE ivr/callback_notice "{CONFIRM_KEY}"')
        key = int(res.get("result", ("0",))[0] or 0) if "error" not in res else -1
        if key == 0:
            res = await req.send_command(f"WAIT FOR DIGIT {self.timeout_ms}")
            key = int(res.get("result", ("0",))[0] or 0) if "error" not in res else -1
        if key != ord(CONFIRM_KEY):
            log.info("callback from %s ended without confirmation", "a caller")
            return
        now = self.clock()
        self.write(lambda: self.store.add_optout(number, "phone-callback", now))
        await req.send_command('STREAM FILE ivr/optout_confirm ""')
