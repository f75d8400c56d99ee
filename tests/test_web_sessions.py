"""Console sessions end on the server's word, not only the cookie's: a cookie copied before a
logout, a new password or a disable no longer authenticates (users.session_epoch, schema 13),
and a session ends 12 h after its login however often it is re-signed. Both backends where a
user row is read or written."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, login, make_web
from ivr.store import Store
from ivr.store.schema import MIGRATIONS
from ivr.web_users import hash_password

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CONTROL = f"/api/campaigns/{CAMPAIGN}/control"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def copied(web, cookie: str):  # type: ignore[no-untyped-def]
    """Another browser holding a copy of a session cookie."""
    thief = web.client()
    thief.cookies.set("ivr_session", cookie)
    return thief


def test_a_cookie_copied_before_logout_is_refused_after_it(web) -> None:
    c = web.client()
    csrf = login(c, "otto")
    saved = c.cookies.get("ivr_session")
    other = web.client()
    login(other, "otto")  # the same user in another browser
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 303
    thief = copied(web, saved)
    r = thief.post(CONTROL, json={"action": "start"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    assert web.store.run_control(CAMPAIGN) is None
    assert thief.get(f"/c/{CAMPAIGN}/overview").status_code == 303
    assert other.get("/api/campaigns").status_code == 401  # logout ends every session
    assert [a["action"] for a in web.store.audit_log(10)].count("logout") == 1
    login(c, "otto")  # a new login works
    assert c.get("/api/campaigns").status_code == 200


def test_a_new_password_ends_the_sessions_opened_before(web) -> None:
    c = web.client()
    login(c, "otto")
    saved = c.cookies.get("ivr_session")
    assert c.get("/api/campaigns").status_code == 200
    web.store.set_user("otto", password_hash=hash_password("brand-new-password-9"))
    assert c.get("/api/campaigns").status_code == 401
    assert copied(web, saved).get("/api/campaigns").status_code == 401
    login(c, "otto", "brand-new-password-9")
    assert c.get("/api/campaigns").status_code == 200
    web.store.set_user("otto", role="viewer")  # a role change is read at each request
    assert c.get("/api/campaigns").status_code == 200


def test_a_session_ended_by_a_disable_stays_ended_once_enabled_again(web) -> None:
    c = web.client()
    login(c, "otto")
    web.store.set_user("otto", disabled=True)
    web.store.set_user("otto", disabled=False)
    assert c.get("/api/campaigns").status_code == 401
    login(c, "otto")
    assert c.get("/api/campaigns").status_code == 200


@backend_sqlite_only  # cookie mechanics
def test_a_session_ends_12_hours_after_login_even_when_re_signed(web, monkeypatch) -> None:
    c = web.client()
    login(c, "otto")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 11 * 3600)
    assert c.get("/lang/en").status_code == 303  # the session changed: the cookie re-signed
    assert c.get("/api/campaigns").status_code == 200
    monkeypatch.setattr(time, "time", lambda: real() + 13 * 3600)
    assert c.get("/api/campaigns").status_code == 401


def test_a_store_of_schema_12_gets_session_epochs_and_token_revocation(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Store.open(path, optout_key=b"k")
    old.add_user("otto", "operator", "hash", NOW)
    old.add_api_token("otto", "sha", NOW)
    old.db.conn.executescript("ALTER TABLE users DROP COLUMN session_epoch; "
                              "ALTER TABLE api_tokens DROP COLUMN revoked_at; "
                              "DROP TABLE optout_key; "  # 15
                              "DROP INDEX calls_open; "  # 16
                              "DROP INDEX run_snapshots_at; "  # 17
                              "DROP TABLE erasure_holds; "  # 18
                              "PRAGMA user_version = 12")
    old.db.conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 12
    again = Store.open(path, optout_key=b"k")
    assert again.version == len(MIGRATIONS) >= 14
    assert again.user_by_name("otto")["session_epoch"] == 0
    assert again.user_by_token("sha", NOW)["name"] == "otto"  # 14: tokens stay active


def test_a_postgresql_store_of_schema_12_gets_session_epochs_and_token_revocation(pg_url: str) -> None:
    from store_sql import PgTestStore
    old = PgTestStore.open(pg_url, optout_key=b"test-key")
    old.add_user("otto", "operator", "hash", NOW)
    old.add_api_token("otto", "sha", NOW)
    old.db.execute("ALTER TABLE users DROP COLUMN session_epoch")
    old.db.execute("ALTER TABLE api_tokens DROP COLUMN revoked_at")
    old.db.execute("DROP TABLE optout_key")  # 15
    old.db.execute("DROP INDEX calls_open")  # 16
    old.db.execute("DROP INDEX run_snapshots_at")  # 17
    old.db.execute("DROP TABLE erasure_holds")  # 18
    old.db.execute("DELETE FROM schema_version WHERE version >= 13")
    old.close()
    again = PgTestStore.open(pg_url, optout_key=b"test-key")
    try:
        assert again.version >= 14
        assert again.user_by_name("otto")["session_epoch"] == 0
        assert again.user_by_token("sha", NOW)["name"] == "otto"
    finally:
        again.close()
