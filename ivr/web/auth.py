"""Who is asking, and may they: sessions (signed cookies), API bearer tokens, roles, CSRF and
the login rate limit. The users themselves (argon2 hashes, tokens, what each role may do) are
ivr.web_users'; this module only applies them to requests."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import HTTPException, Request

from ivr import web_users
from ivr.store.base import StoreBackend
from ivr.store.safe_writes import STORE_ERRORS
from ivr.store.user_scope import campaigns_of

log = logging.getLogger(__name__)

SESSION_USER = "user"
SESSION_CSRF = "csrf"
SESSION_EPOCH = "epoch"  # the user's session_epoch at login: logout, passwd, disable bump it
SESSION_AT = "at"  # login time (Unix s): a session ends 12 h after login, however it is used
SESSION_MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotLoggedIn(Exception):
    """No session and no valid token: pages redirect to /login, the API answers 401."""


# What spans every campaign: a user bound to some never does it, whatever its role says.
SPANS_CAMPAIGNS = frozenset({"gdpr", "users"})


@dataclass(frozen=True)
class User:
    name: str
    role: str
    via: str  # "session" (a browser: CSRF applies) or "token" (a script: no cookie, no CSRF)
    campaigns: frozenset[str] | None = None  # the only ones it sees; None: every campaign

    def can(self, action: str) -> bool:
        return not self.barred(action) and web_users.can(self.role, action)

    def barred(self, action: str) -> bool:
        """An action spanning every campaign, which a user bound to some never does."""
        return self.campaigns is not None and action in SPANS_CAMPAIGNS

    def sees(self, campaign: str | None) -> bool:
        return self.campaigns is None or campaign in self.campaigns

    @classmethod
    def of(cls, row: dict, via: str) -> User:  # type: ignore[type-arg]
        return cls(row["name"], row["role"], via, campaigns_of(row.get("campaigns")))


class LoginLimiter:
    """At most `max_failures` failed logins per user name and client address per `window_s`,
    `user_max_failures` per user name from any address per `user_window_s`, and
    `address_max_failures` per address whatever the names per `address_window_s`; beyond, every
    attempt is refused (429) until the oldest failure leaves its window. The second cap holds
    when addresses are forged (X-Forwarded-For from a loopback client, e.g. an SSH tunnel): at
    most 20 guesses per user in 15 minutes. The third stops one address spraying names (each
    costs a hash). Its cost: an attacker can keep a user, or an office behind one address, from
    logging in; their sessions and API tokens keep working."""

    SWEEP_FROM = 4096  # keys kept before the first sweep of those whose failures all expired

    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, *,
                 user_max_failures: int = 20, user_window_s: float = 900.0,
                 address_max_failures: int = 30, address_window_s: float = 900.0) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self.user_max_failures, self.user_window_s = user_max_failures, user_window_s
        self.address_max_failures, self.address_window_s = address_max_failures, address_window_s
        self._failures: dict[tuple[bytes, str], deque[float]] = {}
        self._user_failures: dict[bytes, deque[float]] = {}
        self._address_failures: dict[str, deque[float]] = {}
        self._sweep_at = self.SWEEP_FROM
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def _recent(self, times: deque[float], window_s: float) -> deque[float]:
        while times and times[0] <= self.clock() - window_s:
            times.popleft()
        return times

    def reserve(self, user: str, client: str) -> float | None:
        """Count this attempt as a failure before its password is checked, or refuse it (None)
        when a limit is reached. Checking first and counting after the hash (~0.3 s) let
        parallel guesses all pass the check: 30 at once were 30 tries instead of 5. Returns
        the reservation, which succeeded() takes back."""
        name = _name_key(user)
        with self._lock:
            # Read, not created: a refused attempt keeps nothing (a flood of refused guesses
            # from new addresses would otherwise add a key each, never swept).
            here = self._recent(self._failures.get((name, client), deque()), self.window_s)
            anywhere = self._recent(self._user_failures.get(name, deque()), self.user_window_s)
            address = self._recent(self._address_failures.get(client, deque()),
                                   self.address_window_s)
            if len(here) >= self.max_failures or len(anywhere) >= self.user_max_failures or \
                    len(address) >= self.address_max_failures:
                return None
            at = self.clock()
            for times in (here, anywhere, address):
                times.append(at)
            self._failures[(name, client)] = here
            self._user_failures[name] = anywhere
            self._address_failures[client] = address
            self._sweep()
            return at

    def succeeded(self, user: str, client: str, reserved: float) -> None:
        """The password was right: this user's failures from this address are forgotten, and
        this attempt's count against the user (the others' stay: they were not this user)."""
        with self._lock:
            self._failures.pop((_name_key(user), client), None)
        self.forget(user, client, reserved)

    def forget(self, user: str, client: str, reserved: float) -> None:
        """Take back one reservation: a right password, or no password checked (busy)."""
        name = _name_key(user)
        with self._lock:
            for times in (self._failures.get((name, client)), self._user_failures.get(name),
                          self._address_failures.get(client)):
                if times is not None and reserved in times:
                    times.remove(reserved)

    def _sweep(self) -> None:
        """Forget the keys whose failures all left their window, once the keys double: each
        guess from a new (forged) address would otherwise keep a key for good."""
        if self._kept() < self._sweep_at:
            return
        tables: tuple[tuple[dict[Any, deque[float]], float], ...] = (
            (self._failures, self.window_s), (self._user_failures, self.user_window_s),
            (self._address_failures, self.address_window_s))
        for table, window in tables:
            for key in [k for k, times in table.items() if not self._recent(times, window)]:
                del table[key]
        self._sweep_at = max(self.SWEEP_FROM, 2 * self._kept())

    def _kept(self) -> int:
        return len(self._failures) + len(self._user_failures) + len(self._address_failures)

    def keys(self) -> int:
        """How many (user, address), user and address entries are kept (memory; tests)."""
        with self._lock:
            return self._kept()


def _name_key(user: str) -> bytes:
    """A typed user name as the limiter keeps it: 32 bytes, however long the name sent."""
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).digest()


def now() -> datetime:
    return datetime.now(timezone.utc)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def csrf_token(request: Request) -> str:
    """The session's CSRF token, drawn on first use (the login page draws it too)."""
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.session.get(SESSION_CSRF)
    return bool(expected and sent and hmac.compare_digest(str(expected), str(sent)))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: Request, store) -> User | None:  # type: ignore[no-untyped-def]
    """The user of a bearer token, else of the session cookie; None when neither is valid
    (unknown, disabled, or the session's user since removed)."""
    token = bearer(request)
    if token is not None:
        row = store.user_by_token(web_users.token_hash(token), now())
        return User.of(row, "token") if row else None
    name = request.session.get(SESSION_USER)
    if not name:
        return None
    row = store.user_by_name(name)  # read at each request anyway (role, disabled)
    if row is None or row["disabled"] or not session_current(request.session, row):
        request.session.pop(SESSION_USER, None)
        return None
    return User.of(row, "session")


def session_current(session: dict, row: dict) -> bool:  # type: ignore[type-arg]
    """The session was opened under the user's current epoch, less than 12 h ago. The cookie's
    signature alone cannot tell: a cookie copied before a logout stays well signed."""
    at = session.get(SESSION_AT)
    return session.get(SESSION_EPOCH) == row["session_epoch"] and \
        isinstance(at, (int, float)) and 0 <= time.time() - at < SESSION_MAX_AGE_S


def session_left_s(session: dict) -> int | None:  # type: ignore[type-arg]
    """Seconds before a logged-in session ends (12 h after login), None without one: a page
    warns before (console.js) instead of losing what the operator was typing."""
    at = session.get(SESSION_AT)
    if not isinstance(at, (int, float)) or not session.get(SESSION_USER):
        return None
    return max(0, int(at + SESSION_MAX_AGE_S - time.time()))


def open_session(request: Request, row: dict) -> None:  # type: ignore[type-arg]
    """A fresh session (and CSRF token) for the user just logged in, keeping the language."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({SESSION_USER: row["name"], SESSION_EPOCH: row["session_epoch"],
                            SESSION_AT: int(time.time()), "lang": lang})


# The login form's fields: longer is no user's name nor a password anyone types; refused
# before the hash and before anything is stored (a 1 MB name was kept whole in the audit).
USER_FIELD_MAX = 256
PASSWORD_FIELD_MAX = web_users.MAX_PASSWORD  # what ivr users add/passwd accept
UNKNOWN_USER = "(unknown user)"
CLIENT_FIELD_MAX = 64  # an address as stored (a forwarded one is whatever the client sent)


def login_fields_ok(name: str, password: str) -> bool:
    return len(name) <= USER_FIELD_MAX and len(password) <= PASSWORD_FIELD_MAX


def login_failed_detail(store: StoreBackend, name: str, client: str) -> dict[str, str]:
    """What the audit keeps of a failed login. The name only when it is a user's: a name that
    is no user's is often the password typed in the wrong field, which /api/audit would show
    to every admin, for good."""
    known = store.user_by_name(name) is not None
    return {"user": name[:USER_FIELD_MAX] if known else UNKNOWN_USER,
            "client": client[:CLIENT_FIELD_MAX]}


class LoginBusy(Exception):
    """Every password check slot stayed taken for HASH_WAIT_S: refused (429), not counted."""


# argon2id (t=3, m=64 MiB) holds 64 MiB and a core for ~0.1 s per check: unbounded, 60
# logins at once took the console to 2.1-2.4 GiB and both cores, beside the calls' Asterisk.
HASH_SLOTS = 2
HASH_WAIT_S = 5.0
_hashing = threading.BoundedSemaphore(HASH_SLOTS)


def check_password(store, name: str, password: str) -> dict | None:  # type: ignore[no-untyped-def]
    """The user row when the password is right and the user enabled, else None. An unknown
    name costs a hash too (verify_password's dummy), so timing does not tell which exist."""
    row = store.user_by_name(name)
    if not _hashing.acquire(timeout=HASH_WAIT_S):
        raise LoginBusy()
    try:
        ok = web_users.verify_password(row["password_hash"] if row else None, password)
        if ok and row is not None and not row["disabled"] and \
                web_users.needs_rehash(row["password_hash"]):
            # Made with weaker parameters than today's (an older release or library): the
            # password is at hand only now, so it is hashed again now.
            try:
                store.rehash_password(name, row["password_hash"],
                                      web_users.hash_password(password))
            except STORE_ERRORS as exc:  # the login stands; the next one tries again
                log.warning("password of %r not hashed again (store: %s)", name,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    finally:
        _hashing.release()
    return row if ok and row is not None and not row["disabled"] else None


def require(user: User | None, action: str) -> User:
    if user is None:
        raise NotLoggedIn()
    if user.barred(action):
        raise HTTPException(403, f"spans every campaign: {action} is not for user {user.name}, "
                            "bound to some campaigns: ask an admin")
    if not user.can(action):
        raise HTTPException(403, f"role {user.role} may not {action.replace('_', ' ')}")
    return user


def check_api_csrf(request: Request, user: User) -> None:
    """A cookie-authenticated API write carries the session's token in X-CSRF-Token; a bearer
    token is not sent by browsers on their own, so it needs none."""
    if request.method in SAFE_METHODS or user.via == "token":
        return
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header: send the page's "
                            "csrf_token with every POST")
