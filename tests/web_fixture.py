"""Shared by the tests/test_web_*.py files: a console app over a file store with one user of
each role, and a logged-in TestClient. (Not a test module: no test_ prefix.)"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import CALLER_ID, make_config, store_at
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
    store: Store
    path: Path

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)


def make_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> Web:
    monkeypatch.setenv("IVR_WEB_SECRET", "test-secret-" + "x" * 20)
    path = tmp_path / "t.db"
    cfg = make_config(tmp_path, campaign={"name": CAMPAIGN, "caller_id": CALLER_ID},
                      store={"path": str(path)}, **sections)
    store = store_at(path, busy_timeout_s=5)
    for name, role in ROLES.items():
        if name not in _HASHES:
            _HASHES[name] = hash_password(PASSWORDS[name])
        store.add_user(name, role, _HASHES[name], NOW)
    app = create_app(cfg, lambda: store_at(path, busy_timeout_s=5),
                     limiter=LoginLimiter(max_failures=5, window_s=300))
    return Web(cfg, app, store, path)


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no #csrf input on the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the form; returns the CSRF token of the new session."""
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": name, "password": password or PASSWORDS[name],
                                    "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/", follow_redirects=True).text)  # the current campaign
