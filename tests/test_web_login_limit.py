"""The login limit holds against guesses sent in parallel (each attempt is counted as a failure
before its password hash, ~0.3 s, and forgotten only when right), against forged addresses
(20 failures per user in 15 minutes, whatever the address) and against one address spraying
names (30 failures in 15 minutes, whatever the names); at most HASH_SLOTS password checks run at
once (argon2id holds 64 MiB each). Limiter mechanics: SQLite."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from web_fixture import PASSWORDS, csrf_of, make_web
from ivr import web_users
from ivr.web import auth
from ivr.web.auth import HASH_SLOTS, LoginLimiter, check_password

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch)


def guess(web, user: str, password: str, csrf: str, cookie: str) -> int:  # type: ignore[no-untyped-def]
    c = web.client()
    c.cookies.set("ivr_session", cookie)
    return c.post("/login", data={"username": user, "password": password,
                                  "csrf_token": csrf}).status_code


def test_parallel_wrong_guesses_get_five_tries_not_more(web) -> None:
    first = web.client()
    csrf = csrf_of(first.get("/login").text)
    cookie = first.cookies.get("ivr_session")
    codes: list[int] = []

    def one(i: int) -> None:
        codes.append(guess(web, "otto", f"wrong-guess-{i:04d}", csrf, cookie))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [401] * 5 + [429] * 7
    failed = [a for a in web.store.audit_log(100) if a["action"] == "login_failed"]
    assert len(failed) == 5  # only five passwords were tried


def test_a_right_password_releases_its_reservation_and_the_failures(web) -> None:
    c = web.client()
    csrf = csrf_of(c.get("/login").text)
    cookie = c.cookies.get("ivr_session")
    assert [guess(web, "otto", "bad-password-x", csrf, cookie) for _ in range(4)] == [401] * 4
    assert guess(web, "otto", PASSWORDS["otto"], csrf, cookie) == 303
    assert [guess(web, "otto", "bad-password-x", csrf, cookie) for _ in range(6)] == \
        [401] * 5 + [429]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_user_gets_20_guesses_in_15_minutes_from_any_number_of_addresses() -> None:
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock)
    assert all(limiter.reserve("otto", f"10.0.0.{i}") is not None for i in range(20))
    assert limiter.reserve("otto", "10.0.1.1") is None  # a fresh address does not help
    assert limiter.reserve("vera", "10.0.1.1") is not None  # another user is not locked
    clock.t += 899
    assert limiter.reserve("otto", "10.0.1.2") is None
    clock.t += 1
    assert limiter.reserve("otto", "10.0.1.3") is not None


def test_a_right_password_takes_back_only_its_own_count() -> None:
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock)
    for i in range(19):
        assert limiter.reserve("otto", f"10.0.0.{i}") is not None
    mine = limiter.reserve("otto", "127.0.0.1")
    assert mine is not None
    limiter.succeeded("otto", "127.0.0.1", mine)
    assert limiter.reserve("otto", "10.0.1.1") is not None  # the 20th failure
    assert limiter.reserve("otto", "10.0.1.2") is None


def test_expired_keys_are_forgotten() -> None:
    """Each guess from a new address keeps a key: those whose failures all expired are dropped
    once the keys double (amortized), so forged addresses cannot grow memory for good."""
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock, address_max_failures=10**6)  # names sprayed: the keys
    for i in range(3000):
        limiter.reserve(f"user{i}", "10.0.0.1")
    assert limiter.keys() == 6001  # none expired: all kept (a user's, a pair's each; the address)
    clock.t += 901
    for i in range(1100):
        limiter.reserve(f"later{i}", "10.0.0.2")
    assert limiter.keys() <= 2 * 1100 + 1  # the 6,001 expired ones are gone


def test_refused_attempts_keep_nothing_and_a_long_name_costs_a_short_key() -> None:
    """Found in review: a refused attempt created its (user, address) key before the check,
    and nothing swept while every attempt was refused; each key held the name as typed, so a
    200 kB name locked out grew the console by ~34 MB a second."""
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock)
    name = "x" * 200_000
    for i in range(20):
        assert limiter.reserve(name, f"10.0.0.{i}") is not None
    kept = limiter.keys()
    assert kept == 41  # the user's, and each address's and its pair's
    for i in range(2000):  # the name is locked out: every attempt refused
        assert limiter.reserve(name, f"10.1.{i // 250}.{i % 250}") is None
    assert limiter.keys() == kept
    sizes = {len(k[0]) for k in limiter._failures} | {len(k) for k in limiter._user_failures}
    assert sizes == {32}


def test_forged_forwarded_addresses_get_20_guesses_through_uvicorn(web) -> None:
    """The options of `ivr web` (cli_web.py): X-Forwarded-For trusted from 127.0.0.1, so a
    local client (an SSH tunnel) can name any address it likes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(web.app, host="127.0.0.1", port=port,
                                           log_level="warning", proxy_headers=True,
                                           forwarded_allow_ips="127.0.0.1"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            csrf = csrf_of(c.get("/login").text)
            codes = [c.post("/login", data={"username": "otto", "password": f"guess-{i:03d}",
                                            "csrf_token": csrf},
                            headers={"X-Forwarded-For": f"10.9.0.{i}"}).status_code
                     for i in range(22)]
    finally:
        server.should_exit = True
        thread.join(10)
    assert codes == [401] * 20 + [429] * 2
    clients = {a["detail"]["client"] for a in web.store.audit_log(100)
               if a["action"] == "login_failed"}
    assert len(clients) == 20  # the addresses were taken as sent: the per-user cap held


def test_one_address_gets_30_guesses_in_15_minutes_whatever_the_names() -> None:
    """Found in a hunt: each name sprayed from one address got its own five tries, so 60 names
    at once were 60 argon2 checks (2.1-2.4 GiB, both cores)."""
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock)
    assert all(limiter.reserve(f"user{i}", "10.0.0.1") is not None for i in range(30))
    assert limiter.reserve("user-31", "10.0.0.1") is None
    assert limiter.reserve("user-31", "10.0.0.2") is not None  # another address is not locked
    clock.t += 899
    assert limiter.reserve("user-32", "10.0.0.1") is None
    clock.t += 1
    assert limiter.reserve("user-32", "10.0.0.1") is not None


def test_a_reservation_forgotten_counts_nowhere() -> None:
    clock = Clock()
    limiter = LoginLimiter(5, 300, clock)
    for i in range(4):
        assert limiter.reserve("otto", "10.0.0.1") is not None
    busy = limiter.reserve("otto", "10.0.0.1")
    assert busy is not None
    limiter.forget("otto", "10.0.0.1", busy)
    assert limiter.reserve("otto", "10.0.0.1") is not None  # the fifth failure, not the sixth
    assert limiter.reserve("otto", "10.0.0.1") is None


def test_at_most_hash_slots_password_checks_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_verify(password_hash: str | None, password: str) -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return False
    monkeypatch.setattr(web_users, "verify_password", slow_verify)

    class Store:
        def user_by_name(self, name: str) -> None:
            return None
    threads = [threading.Thread(target=check_password, args=(Store(), f"u{i}", "pw"))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == HASH_SLOTS


def test_a_login_that_finds_no_check_slot_is_refused_and_not_counted(
        web, monkeypatch: pytest.MonkeyPatch) -> None:
    first = web.client()
    csrf = csrf_of(first.get("/login").text)
    cookie = first.cookies.get("ivr_session")
    monkeypatch.setattr(auth, "HASH_WAIT_S", 0.05)
    monkeypatch.setattr(auth, "_hashing", threading.BoundedSemaphore(1))
    auth._hashing.acquire()  # every slot taken (a flood)
    assert [guess(web, "otto", "bad-password-x", csrf, cookie) for _ in range(6)] == [429] * 6
    assert not [a for a in web.store.audit_log(100) if a["action"] == "login_failed"]
    auth._hashing.release()
    assert guess(web, "otto", PASSWORDS["otto"], csrf, cookie) == 303  # nothing was counted
