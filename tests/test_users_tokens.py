"""API tokens end one by one: `ivr users revoke NAME ID|--all` (api_tokens.revoked_at, schema
14), `ivr users tokens NAME` lists them; a disable revokes them all for good; a new password
keeps them (separate credentials). Both backends (conftest.backend_cfg_file)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import Backend
from test_users import PASSWORD, invoke
from ivr import web_users
from ivr.store import Store
from ivr.store.pg_console import PgConsoleSQL
from ivr.store.sqlite_console import ConsoleSQL

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


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
    assert code == 1 and err.strip() == ("error: user 'nobody' does not exist: add it with "
                                         "`ivr users add nobody --role ROLE`")


def test_every_users_command_tells_how_to_add_an_unknown_user(cfg: Path,
                                                               backend: Backend) -> None:
    backend.open()  # an existing store: a command creating one says so (test_cli_commands)
    for args, stdin in ((("tokens", "nobody"), ""), (("revoke", "nobody", "1"), ""),
                        (("passwd", "nobody"), PASSWORD), (("disable", "nobody"), ""),
                        (("disable", "nobody", "--enable"), ""), (("token", "nobody"), "")):
        code, _, err = invoke(cfg, "users", *args, stdin=stdin)
        assert (code, err.strip()) == (1, "error: user 'nobody' does not exist: add it with "
                                          "`ivr users add nobody --role ROLE`"), args


def test_a_token_id_no_token_can_have_is_one_line(cfg: Path, backend: Backend) -> None:
    """Beyond 64 bits the stores raise (SQLite OverflowError, PostgreSQL bigint out of range);
    `abc` and `-1` were click's four-line usage error."""
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    token, _ = issue(cfg, "bot")
    for given in ("99999999999999999999", str(2**63), "9" * 5000, "-1", "0", "-0",
                  str(2**63 - 1)):
        code, _, err = invoke(cfg, "users", "revoke", "bot", given)
        assert (code, err.strip()) == (1, f"error: TOKEN_ID: {given} is not an active token "
                                          "of 'bot': see `ivr users tokens bot`"), given[:30]
    for given in ("abc", "1.5", "-x", "--1"):
        code, _, err = invoke(cfg, "users", "revoke", "bot", given)
        assert (code, err.strip()) == (1, f"error: TOKEN_ID: {given!r} is not a token's id (a "
                                          "whole number): see `ivr users tokens bot`"), given
    assert works(backend, token)
    code, out, _ = invoke(cfg, "users", "revoke", "bot", "00" + str(api_ids(backend)[0]))
    assert code == 0 and "1 token(s) of bot revoked" in out and not works(backend, token)


def api_ids(backend: Backend) -> list[int]:
    return [t["id"] for t in backend.open().api_tokens("bot")]


def test_the_id_told_is_the_issued_tokens_even_if_another_is_issued_meanwhile(
        cfg: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another admin's token, issued between this insert and the id's telling, was named."""
    invoke(cfg, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    other = backend.open()
    for cls in (ConsoleSQL, PgConsoleSQL):
        def add(self: Any, user: str, h: str, now: datetime, actor: str | None = None,
                real: Any = cls.add_api_token) -> Any:
            token_id = real(self, user, h, now, actor)
            real(other, user, web_users.token_hash("another admin's"), now)  # its own link
            return token_id
        monkeypatch.setattr(cls, "add_api_token", add)
    token, err = issue(cfg, "bot")
    mine = [t["id"] for t in other.api_tokens("bot")
            if t["token_hash"] == web_users.token_hash(token)]
    assert len(api_ids(backend)) == 2 and err.startswith(f"token {mine[0]} of bot;")


def test_add_api_token_returns_the_rows_id(store: Store) -> None:
    store.add_user("bot", "operator", "h", T0)
    ids = [store.add_api_token("bot", h * 64, T0) for h in "abc"]
    assert ids == [t["id"] for t in store.api_tokens("bot")] and len(set(ids)) == 3


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
