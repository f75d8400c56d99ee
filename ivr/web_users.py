"""Console users: argon2id password hashes, API tokens (only their SHA-256 is stored) and what
each role may do. The web app (ivr/web/) and `ivr users` (ivr/cli_users.py) share this module.
"""
from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("admin", "operator", "viewer")
TOKEN_PREFIX = "ivr_"  # tells a token from a password in logs and secret scanners
MIN_PASSWORD = 12  # characters: the console starts calls and shows voters' numbers
MAX_PASSWORD = 1024  # characters: the login form refuses a longer one (web/auth.py)

# What each role may do. `view`: every page and read API (counts, calls, contacts, reports,
# proof of consent); `control`: start, pause, resume, stop, hard stop, pacing; `contacts`: list
# uploads; `optout`: add to the opposition list; `prompts`: upload, rebuild; `gdpr`: a person's
# export and erasure; `users`: manage users and tokens.
ACTIONS = ("view", "control", "contacts", "optout", "prompts", "gdpr", "users")
_ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "control", "contacts", "optout", "prompts"}),
    "admin": frozenset(ACTIONS),
}

# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, t=3, m=64 MiB, p=4).
_hasher = PasswordHasher(type=Type.ID)


@functools.cache
def _dummy() -> str:
    """Verified against when the user does not exist, so a wrong name costs as long as a wrong
    password (no user enumeration by timing). Made at the first login, not at import: the hash
    takes 64 MiB and ~0.3 s, which every `ivr` command (this module is imported by the CLI)
    paid before."""
    return _hasher.hash(secrets.token_urlsafe(16))


def can(role: str, action: str) -> bool:
    """May `role` do `action`? An unknown action is a programming error, never a silent no."""
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    return action in _ALLOWED.get(role, frozenset())


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    try:
        password.encode("utf-8")  # stdin's undecodable bytes arrive as lone surrogates
    except UnicodeEncodeError:
        raise ValueError("password: holds bytes that are not UTF-8 text: type or pipe it as "
                         "UTF-8") from None
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: {len(password)} characters: use at least {MIN_PASSWORD}")
    if len(password) > MAX_PASSWORD:  # else set here, then refused at every login
        raise ValueError(f"password: {len(password)} characters: use at most {MAX_PASSWORD}")
    return password


def hash_password(password: str) -> str:
    """An argon2id hash ($argon2id$...) with its own random salt."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; False for a mismatch, a damaged hash or no user (None),
    each after the same argon2 work."""
    dummy = _dummy()  # made before either branch: the first login costs the same for all
    try:
        return _hasher.verify(password_hash or dummy, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """The hash was made with weaker parameters than today's: rehash it at the next login."""
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A new API token: 256 random bits. Shown once; the store keeps token_hash(token)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a token: enough for 256 random bits, and a fast lookup per request."""
    return hashlib.sha256(token.encode()).hexdigest()
