"""Shared by the tests/test_web_*.py files: a console app over a store with one user of each
role, and a logged-in TestClient. The store is a SQLite file, or the `backend` fixture's store
(conftest.Backend: SQLite or PostgreSQL) for the tests where the backend matters. (Not a test
module: no test_ prefix.)"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import CALLER_ID, Backend, make_config, store_at
from ivr.config import Config
from ivr.store import Store
from ivr.web import create_app
from ivr.web.auth import LoginLimiter
from ivr.web_users import hash_password

CAMPAIGN = "demo"
PASSWORDS = {"ada": "admin-password-1", "otto": "operator-pass-1", "vera": "viewer-password-1"}
ROLES = {"ada": "admin", "otto": "operator", "vera": "viewer"}
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
CSRF_RE = re.compile(r'id="csrf" name="csrf_token" value="([^"]+)"')
_HASHES: dict[str, str] = {}  # argon2 is slow on purpose: hash each test password once


@dataclass
class Web:
    cfg: Config
    app: Any
    store: Store  # the test's own connection (PostgreSQL: with tests/store_sql.py's SQL)
    path: Path | None  # the SQLite file; None on PostgreSQL
    open: Callable[[], Any]  # another connection as the console opens one

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)


def sqlite_console_store(path: Path) -> tuple[dict[str, str], Store, Callable[[], Any]]:
    """A SQLite file as the console uses it: its config section, the test's own connection,
    and the opener the console calls for each of its threads' connections."""
    def opener() -> Any:
        return store_at(path, busy_timeout_s=5)
    return {"path": str(path)}, opener(), opener


def make_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Backend | None = None,
             **sections: Any) -> Web:
    """The console over a SQLite file under tmp_path, or over `backend`'s store."""
    monkeypatch.setenv("IVR_WEB_SECRET", "test-secret-" + "x" * 20)
    path: Path | None = None
    if backend is None or backend.url is None:
        path = tmp_path / "t.db"
        section, store, opener = sqlite_console_store(path)
    else:
        section, store, opener = backend.section(), backend.open(), backend.program
    cfg = make_config(tmp_path, campaign={"name": CAMPAIGN, "caller_id": CALLER_ID},
                      store=section, **sections)
    for name, role in ROLES.items():
        if name not in _HASHES:
            _HASHES[name] = hash_password(PASSWORDS[name])
        store.add_user(name, role, _HASHES[name], NOW)
    app = create_app(cfg, opener, limiter=LoginLimiter(max_failures=5, window_s=300))
    return Web(cfg, app, store, path, opener)


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no #csrf input on the page"
    return found.group(1)


def make_prompted_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Web:
    """The console with two TTS prompts (unbuilt): the prompts page draws a row each."""
    (tmp_path / "src").mkdir()
    return make_web(tmp_path, monkeypatch, prompts={
        "sources_dir": "src", "build_dir": "build",
        "items": {"intro": {"text": "Bonjour."}, "message": {"text": "Votez."}}})


def login(client: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the form; returns the CSRF token of the new session."""
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": name, "password": password or PASSWORDS[name],
                                    "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/", follow_redirects=True).text)  # the current campaign


_EN_SPAN = re.compile(r'<span lang="en">([^<]*)</span>')


def said(fragment: str) -> str:
    """HTML without the `<span lang="en">` that marks its English, the English kept."""
    return _EN_SPAN.sub(r"\1", fragment)
