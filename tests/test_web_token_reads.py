"""What an API read by token or an open live stream does when its user changes or the store
is busy: the stream (/api/campaigns/{c}/events) ends at its next event after a logout, a
disable or a revoke (it checked every 30th event: ~30 s more of voters' numbers), and a read by
token neither waits for nor fails on another connection's write lock (noting last_used_at
did: 30 s under `ivr web`, then a 500). Both backends (conftest.backend)."""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend
from web_fixture import CAMPAIGN, Web, login, make_web
from ivr.store import sqlite_console
from ivr.web import api
from ivr.web_users import new_token, token_hash

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
BEFORE_CHANGE = 3  # events received before the user is changed
# At most 2 events after it: one may be under way (checked before the change committed), and
# this client may read it late on a busy machine. Checking every 30th event let 27 through.
AFTER_CHANGE_MAX = 2


@pytest.fixture
def web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Backend) -> Web:
    monkeypatch.setattr(api, "EVENT_EVERY_S", 0.05)  # 30 events in 1.5 s, not 30 s
    return make_web(tmp_path, monkeypatch, backend)


def events_after(web: Web, change: Any, headers: dict[str, str]) -> int:
    """Events the stream sent after change() ran; the stream must end by itself."""
    c = web.client()
    login(c, "otto")
    n = 0
    with c.stream("GET", f"/api/campaigns/{CAMPAIGN}/events", headers=headers) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            assert json.loads(line[len("data: "):])["campaign"] == CAMPAIGN
            n += 1
            if n == BEFORE_CHANGE:
                change()
            assert n < 100, "the stream went on after the change"
    return n - BEFORE_CHANGE


@pytest.mark.parametrize("how", ["logout", "disable", "demote_and_disable"])
def test_a_session_stream_ends_at_its_next_event(web: Web, how: str) -> None:
    change = {"logout": lambda: web.store.end_sessions("otto"),
              "disable": lambda: web.store.set_user("otto", disabled=True),
              "demote_and_disable": lambda: web.store.set_user("otto", role="viewer",
                                                               disabled=True)}[how]
    assert events_after(web, change, {}) <= AFTER_CHANGE_MAX


def test_a_token_stream_ends_at_its_next_event_once_revoked(web: Web) -> None:
    token = new_token()
    web.store.add_api_token("otto", token_hash(token), T0)
    revoke = lambda: web.store.revoke_api_tokens("otto", T0)  # noqa: E731
    assert events_after(web, revoke, {"Authorization": f"Bearer {token}"}) <= AFTER_CHANGE_MAX


def test_a_stream_goes_on_while_its_user_may_see_it(web: Web) -> None:
    c = web.client()
    login(c, "vera")
    n = 0
    with c.stream("GET", f"/api/campaigns/{CAMPAIGN}/events") as r:
        for line in r.iter_lines():
            n += line.startswith("data: ")
            if n == 40:  # past the 30 events between two checks of before
                break
    assert n == 40


def test_a_token_read_does_not_wait_for_the_write_lock(
        backend: Backend, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # this test's skip is the first (raising=False: the test also runs, and fails, without it)
    monkeypatch.setattr(sqlite_console, "_use_skips", [0], raising=False)
    store = backend.program(busy_timeout_s=5.0)  # a console thread's connection
    store.add_user("bot", "viewer", "h", T0)
    token = new_token()
    store.add_api_token("bot", token_hash(token), T0)
    other, got = backend.open(), {}
    reader = threading.Thread(target=lambda: got.update(
        user=store.user_by_token(token_hash(token), T0 + timedelta(minutes=5))))
    with caplog.at_level(logging.INFO, logger="ivr.store.sqlite_console"):
        with other.transaction():  # an import, an erasure, a controller's batch
            if backend.url is not None:  # PostgreSQL: the token's row itself is held
                other.q("SELECT id FROM api_tokens FOR UPDATE")
            else:
                other.db.execute("UPDATE users SET role = role WHERE name = 'bot'")
            reader.start()
            reader.join(timeout=2.0)
            assert not reader.is_alive(), "the read by token waited for the lock"
        reader.join()
    assert got["user"] is not None and got["user"]["name"] == "bot"
    assert store.api_tokens("bot")[0]["last_used_at"] is None  # skipped, not waited for
    assert "its use was not noted" in caplog.text and token not in caplog.text
    assert token_hash(token) not in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    store.user_by_token(token_hash(token), T0 + timedelta(minutes=6))  # the lock is gone
    assert store.api_tokens("bot")[0]["last_used_at"] == "2026-03-02T09:06:00.000Z"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_token_get_is_answered_while_another_process_writes(web: Web) -> None:
    """The console's own request, as the hunter's: a GET by token while another connection
    holds SQLite's write lock (BEGIN IMMEDIATE) is a 200, at once."""
    token = new_token()
    web.store.add_api_token("vera", token_hash(token), T0)
    other = web.open()
    with other.transaction():
        other.db.execute("UPDATE users SET role = role WHERE name = 'vera'")
        r = web.client().get(f"/api/campaigns/{CAMPAIGN}/overview",
                             headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["campaign"] == CAMPAIGN
