"""FastAGI authentication primitives: the per-call token and the `callback` route's secret.

FastAGI has no authentication and no TLS: `agi.allowed_peers` is the first gate, these secrets
the second. The per-call token travels controller -> Originate variable -> dialplan -> AGI
argument; the store keeps only its SHA-256. Nothing here logs a token or a secret.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from typing import TYPE_CHECKING

from ivr.errors import ConfigError, PbxError

if TYPE_CHECKING:
    from ivr.config import Config

TOKEN_BYTES = 24  # 192 bits from `secrets`; hex, so it is safe in any dialplan or AGI argument
CALLBACK_SECRET_ENV = "IVR_CALLBACK_SECRET"  # the controller's copy of the dialplan global
# It travels as an AGI argument: no comma, quote or space; long enough not to be guessed.
_SECRET_FORM = re.compile(r"[A-Za-z0-9_.+-]{16,}")


def new_token() -> str:
    """An unguessable single-use token for one attempt."""
    return secrets.token_hex(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the store keeps. A plain SHA-256 is enough: the token has 192 bits of entropy,
    so there is nothing to brute-force and no salt to add."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def token_matches(token: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of the hashes; an empty token or no stored hash never match."""
    if not token or not stored_hash:
        return False
    return hmac.compare_digest(token_hash(token).encode(), stored_hash.encode())


def secret_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a shared secret; an empty expected secret refuses all."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def callback_secret_from_env() -> str | None:
    """IVR_CALLBACK_SECRET of the controller's environment, None when unset or empty."""
    value = os.environ.get(CALLBACK_SECRET_ENV) or None
    if value is not None and not _SECRET_FORM.fullmatch(value):
        raise ConfigError(f"{CALLBACK_SECRET_ENV} must be 16 or more letters, digits or - _ . + "
                          "(it is passed as an AGI argument)")
    return value


def callback_secret(cfg: Config) -> str:
    """The `callback` route's shared secret: the environment, else (sandbox) the file that
    `ivr pbx up` writes into the sandbox's [globals] too."""
    env = callback_secret_from_env()
    if env:
        return env
    if cfg.pbx.mode == "sandbox":
        from ivr.telephony.sandbox import Sandbox  # a sandbox's secret is its file
        return Sandbox(cfg).callback_secret()
    raise PbxError(f"{CALLBACK_SECRET_ENV} is not set: export it, with the same value as "
                   f"{CALLBACK_SECRET_ENV} in the [globals] of the PBX (README)")
