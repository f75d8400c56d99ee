"""The login limit holds against guesses sent in parallel: each attempt is counted as a failure
before its password hash (~0.3 s) and forgotten only when right. Limiter mechanics: SQLite."""
from __future__ import annotations

import threading

import pytest

from web_fixture import PASSWORDS, csrf_of, make_web

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
