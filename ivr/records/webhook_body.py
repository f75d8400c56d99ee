"""What a webhook receiver gets and checks: the outcome's JSON body, its HMAC-SHA256 signature
with IVR_WEBHOOK_SECRET, and its delivery id. Pure: the delivery itself is webhooks.py."""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any
from urllib.parse import quote

from ivr.config import Config
from ivr.errors import ConfigError
from ivr.store.base import Row

ENV = "IVR_WEBHOOK_SECRET"
SECRET_MIN = 32  # bytes, as the opposition key's and the console's secrets
HEADER = "X-IVR-Signature"
# X-IVR-Delivery must be ASCII: visible ASCII but `%` kept, the rest percent-encoded (UTF-8)
DELIVERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
FIELDS = ("campaign", "attempt", "number", "outcome", "stage", "started_at", "answered_at",
          "ended_at", "hangup_cause", "node", "controller")


def secret(cfg: Config) -> bytes | None:
    """The signing secret when webhooks.url is set (None when it is not). Refuses to start
    without one: an unsigned outcome could be forged by anyone who can reach the receiver."""
    if not cfg.webhooks.url:
        return None
    value = os.environ.get(ENV, "")
    if not value:
        raise ConfigError(f"webhooks.url is set but {ENV} is not: export the secret the "
                          "receiver checks X-IVR-Signature with")
    # The environment's own bytes (os.environb, as the README's receiver reads them): a secret
    # that is not UTF-8 was a UnicodeEncodeError traceback, and differed from the receiver's.
    key = os.fsencode(value)
    if len(key) < SECRET_MIN:  # a short key is guessed, and every outcome then forged
        raise ConfigError(f"{ENV} is {len(key)} bytes long: use at least {SECRET_MIN} (e.g. "
                          "`openssl rand -hex 32`), and give the receiver the same")
    return key


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def mask(number: str | None) -> str:
    """+33612345678 -> +336…78: enough to tell calls apart in a log, not to dial."""
    n = number or ""
    return n[:4] + "…" + n[-2:] if len(n) > 6 else "…"


def delivery_id(campaign: str, call_id: int) -> str:
    """`<campaign>:<call_id>`: a name of visible ASCII without `%` as it is, any other
    character's UTF-8 bytes as %XX (législatives-2026 -> l%C3%A9gislatives-2026); a receiver
    gets the name back with urllib.parse.unquote of what precedes the last `:`."""
    return f"{quote(campaign, safe=DELIVERY_SAFE)}:{call_id}"


def event(call: Row) -> dict[str, Any]:
    """The JSON body of one outcome."""
    return {"event": "call.outcome", "call_id": call["id"],
            **{k: call.get(k) for k in FIELDS}}
