"""What the audit keeps of a failed login: the name only when it is a user's (a password typed
into the user-name field was kept for good and shown to admins at /api/audit), and nothing of
an absurdly long field (30 anonymous attempts with ~1 MB names grew the store by 27 MB)."""
from __future__ import annotations

import json

import pytest

from conftest import Backend
from web_fixture import PASSWORDS, Web, csrf_of, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch, backend: Backend) -> Web:  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _post_login(web: Web, username: str, password: str) -> int:
    c = web.client()
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"username": username, "password": password,
                                  "csrf_token": token, "next": "/"}).status_code


def _failed(web: Web) -> list[dict]:  # type: ignore[type-arg]
    return [r["detail"] for r in web.store.audit_log(1000) if r["action"] == "login_failed"]


def test_a_password_typed_as_the_user_name_leaves_no_trace(web: Web) -> None:
    typed = PASSWORDS["ada"]  # the admin types her password into the user-name field
    assert _post_login(web, typed, "") == 401
    assert _post_login(web, "otto", "not-his-password") == 401
    assert _post_login(web, "y" * 256, "p") == 401  # long, yet within the field's limit
    assert _failed(web) == [{"user": "(unknown user)", "client": "testclient"},
                            {"user": "otto", "client": "testclient"},
                            {"user": "(unknown user)", "client": "testclient"}]
    every_row = json.dumps(web.store.audit_log(1000), default=str)
    assert typed not in every_row
    admin = web.client()
    login(admin, "ada")
    assert typed not in admin.get("/api/audit").text


def test_absurdly_long_login_fields_are_refused_and_not_kept(web: Web) -> None:
    if web.path is not None:
        web.store.checkpoint_wal()
    before = web.path.stat().st_size if web.path is not None else 0
    codes = {_post_login(web, f"{i}" + "x" * 900_000, "p") for i in range(30)}
    codes.add(_post_login(web, "otto", "p" * 900_000))
    assert codes == {400}
    assert _failed(web) == []
    assert len(json.dumps(web.store.audit_log(1000), default=str)) < 4096
    if web.path is not None:  # SQLite: the file itself, its WAL copied in
        web.store.checkpoint_wal()
        assert web.path.stat().st_size - before < 16 * 1024
    assert _post_login(web, "otto", PASSWORDS["otto"]) == 303  # the limiter counted none
