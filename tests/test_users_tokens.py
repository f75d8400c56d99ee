"""API tokens end one by one: `ivr users revoke NAME ID|--all` (api_tokens.revoked_at, schema
14), `ivr users tokens NAME` lists them; a disable revokes them all for good; a new password
keeps them (separate credentials). Both backends (conftest.backend_cfg_file)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Backend
from test_users import PASSWORD, invoke
from ivr import web_users


@pytest.fixture
def cfg(backend_cfg_file: Path) -> Path:
    return backend_cfg_file


def works(backend: Backend, token: str) -> bool:
    user = backend.open().user_by_token(web_users.token_hash(token), datetime.now(timezone.utc))
    return user is not None


def issue(cfg: Path, name: str) -> tuple[str, str]:
    code, out, err = invoke(cfg, "users", "token", name)
    assert code == 0, err
    return out.strip(), err


def test_one_token_is_revoked_and_the_others_keep_working(cfg: Path, backend: Backend) -> None:
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    first, err = issue(cfg, "bot")
    second, _ = issue(cfg, "bot")
    first_id = backend.open().api_tokens("bot")[0]["id"]
    assert f"ivr users revoke bot {first_id}`" in err  # the id is told on stderr, not stdout
    code, out, _ = invoke(cfg, "users", "tokens", "bot")
    assert code == 0 and out.count("\tactive") == 2
    assert f"sha256:{web_users.token_hash(first)[:12]}" in out and first not in out
    code, out, _ = invoke(cfg, "users", "revoke", "bot", str(first_id))
    assert code == 0 and "1 token(s) of bot revoked" in out
    assert not works(backend, first) and works(backend, second)
    store = backend.open()
    assert store.audit_log(limit=1)[0]["action"] == "api_token_revoked"
    assert store.api_tokens("bot")[0]["revoked_at"] is not None
    _, out, _ = invoke(cfg, "users", "tokens", "bot")
    assert out.count("\trevoked ") == 1 and out.count("\tactive") == 1
    code, _, err = invoke(cfg, "users", "revoke", "bot", str(first_id))  # already revoked
    assert code == 1 and err.strip() == (
        f"error: TOKEN_ID: {first_id} is not an active token of 'bot': see "
        "`ivr users tokens bot`")
    assert invoke(cfg, "users", "revoke", "bot", "--all")[0] == 0
    assert not works(backend, second)


def test_another_users_token_id_is_not_revoked(cfg: Path, backend: Backend) -> None:
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    invoke(cfg, "users", "add", "eve", "--role", "viewer", stdin=PASSWORD)
    token, _ = issue(cfg, "bot")
    bot_id = backend.open().api_tokens("bot")[0]["id"]
    code, _, err = invoke(cfg, "users", "revoke", "eve", str(bot_id))
    assert code == 1 and "is not an active token of 'eve'" in err
    assert works(backend, token)


def test_revoke_needs_an_id_or_all_and_a_known_user(cfg: Path) -> None:
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    for args in ((), ("1", "--all")):
        code, _, err = invoke(cfg, "users", "revoke", "bot", *args)
        assert code == 1 and err.strip() == ("error: TOKEN_ID: give one token's id "
                                             "(`ivr users tokens NAME`) or --all")
    code, _, err = invoke(cfg, "users", "revoke", "nobody", "--all")
    assert code == 1 and err.strip() == "error: user 'nobody' does not exist"


def test_a_disable_revokes_the_tokens_for_good(cfg: Path, backend: Backend) -> None:
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    token, _ = issue(cfg, "bot")
    assert invoke(cfg, "users", "disable", "bot")[0] == 0
    assert invoke(cfg, "users", "disable", "bot", "--enable")[0] == 0
    assert not works(backend, token)  # enabling again does not bring it back
    fresh, _ = issue(cfg, "bot")
    assert works(backend, fresh)


def test_a_new_password_keeps_the_tokens(cfg: Path, backend: Backend) -> None:
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    token, _ = issue(cfg, "bot")
    assert invoke(cfg, "users", "passwd", "bot", stdin="another long secret")[0] == 0
    assert works(backend, token)
