"""`ivr users` when two admins act at once, and the last admin: no token is stored for a user
another admin disabled meanwhile (nor comes back with `--enable`), the only enabled admin is
neither disabled nor demoted without --force (`ivr users role`), and a name added by another
admin meanwhile is one line. Both backends (conftest.backend)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import ivr.cli_users as cli_users
from conftest import Backend
from test_users import PASSWORD, invoke
from test_users_tokens import works
from ivr.store import sqlite_console

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
@pytest.fixture
def cfg(backend_cfg_file: Path) -> Path:
    return backend_cfg_file


LAST_ADMIN = ("error: user 'ada' is the only enabled admin: {} it leaves the console none "
              "(GDPR export and erasure, the audit, users); make another user admin first "
              "(`ivr users role NAME admin`) or give --force")




def while_held(backend: Backend, hold: Any, act: Any, hold_s: float = 0.3) -> Any:
    """act() in a thread while another connection's transaction has done hold(other) and
    not committed yet (SQLite: BEGIN IMMEDIATE; PostgreSQL: its row locks), then commits.
    Returns act()'s result, or the exception it raised."""
    other, got = backend.open(), {}

    def run() -> None:
        try:
            got["result"] = act()
        except Exception as exc:  # handed to the test
            got["result"] = exc
    with other.transaction():
        hold(other)
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(hold_s)  # act() is now waiting for the lock (or, before, went past it)
    thread.join(timeout=10)
    assert not thread.is_alive()
    return got["result"]


# -- 1. a token and a disable at once ----------------------------------------------------------
def test_no_token_is_stored_for_a_user_disabled_meanwhile(backend: Backend) -> None:
    store = backend.program()
    store.add_user("bob", "operator", "$argon2id$x", T0)
    got = while_held(backend, lambda other: other.set_user("bob", disabled=True),
                     lambda: store.add_api_token("bob", "ab" * 32, T0))
    assert isinstance(got, ValueError) and str(got) == \
        "user 'bob' is disabled: enable it first"
    assert store.api_tokens("bob") == []


def test_the_token_command_racing_a_disable_is_refused_in_one_line(
        cfg: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke(cfg, "users", "add", "bob", "--role", "operator", stdin=PASSWORD)
    real = cli_users.new_token

    def racing() -> str:  # the other admin's disable, after this command's own check
        assert invoke(cfg, "users", "disable", "bob")[0] == 0
        return real()
    monkeypatch.setattr(cli_users, "new_token", racing)
    code, out, err = invoke(cfg, "users", "token", "bob")
    assert (code, out, err.strip()) == (1, "", "error: user 'bob' is disabled: enable it first")
    assert backend.open().api_tokens("bob") == []


def test_a_disabled_users_token_is_inactive_and_enabling_revokes_it(
        cfg: Path, backend: Backend) -> None:
    """A token left unrevoked (a disable interrupted before its revocation, or issued beside
    it by an older release) is listed inactive, and does not come back with --enable."""
    invoke(cfg, "users", "add", "bob", "--role", "operator", stdin=PASSWORD)
    token = invoke(cfg, "users", "token", "bob")[1].strip()
    backend.open().set_user("bob", disabled=True)  # the disable's first half only
    code, out, _ = invoke(cfg, "users", "tokens", "bob")
    assert code == 0 and out.rstrip().endswith("\tinactive (user disabled)")
    assert invoke(cfg, "users", "disable", "bob", "--enable")[0] == 0
    assert not works(backend, token)
    _, out, _ = invoke(cfg, "users", "tokens", "bob")
    assert "\trevoked " in out and "active" not in out


def test_enabling_an_enabled_user_keeps_its_tokens(cfg: Path, backend: Backend) -> None:
    invoke(cfg, "users", "add", "bob", "--role", "operator", stdin=PASSWORD)
    token = invoke(cfg, "users", "token", "bob")[1].strip()
    assert invoke(cfg, "users", "disable", "bob", "--enable")[0] == 0
    assert works(backend, token)


# -- 3. the last enabled admin -----------------------------------------------------------------
def test_the_only_enabled_admin_is_kept_by_the_store(store: Any) -> None:
    store.add_user("ada", "admin", "h", T0)
    store.add_user("otto", "operator", "h", T0)
    for change in ({"disabled": True}, {"role": "viewer"}):
        with pytest.raises(sqlite_console.LastAdmin,
                           match="^user 'ada' is the only enabled admin$"):
            store.set_user("ada", keep_admin=True, **change)
    got = store.user_by_name("ada")
    assert (got["role"], got["disabled"]) == ("admin", 0)
    store.set_user("otto", disabled=True, keep_admin=True)  # not an admin: no question
    store.set_user("otto", disabled=False, role="admin", keep_admin=True)
    store.set_user("ada", disabled=True, keep_admin=True)  # otto is admin now
    with pytest.raises(sqlite_console.LastAdmin):
        store.set_user("otto", role="operator", keep_admin=True)
    store.set_user("otto", role="operator")  # without keep_admin: as before


def test_two_admins_disabling_each_other_leave_one(backend: Backend) -> None:
    store = backend.program()
    store.add_user("ada", "admin", "h", T0)
    store.add_user("bea", "admin", "h", T0)
    got = while_held(backend, lambda other: other.set_user("bea", disabled=True,
                                                           keep_admin=True),
                     lambda: store.set_user("ada", disabled=True, keep_admin=True))
    assert isinstance(got, sqlite_console.LastAdmin)
    assert [u["name"] for u in store.users() if not u["disabled"]] == ["ada"]


def test_the_last_admin_is_disabled_or_demoted_only_with_force(cfg: Path,
                                                               backend: Backend) -> None:
    invoke(cfg, "users", "add", "ada", "--role", "admin", stdin=PASSWORD)
    invoke(cfg, "users", "add", "otto", "--role", "operator", stdin=PASSWORD)
    code, out, err = invoke(cfg, "users", "disable", "ada")
    assert (code, out, err.strip()) == (1, "", LAST_ADMIN.format("disabling"))
    code, out, err = invoke(cfg, "users", "role", "ada", "viewer")
    assert (code, out, err.strip()) == (1, "", LAST_ADMIN.format("demoting"))
    store = backend.open()
    assert (store.user_by_name("ada")["role"], store.user_by_name("ada")["disabled"]) == \
        ("admin", 0)
    code, out, _ = invoke(cfg, "users", "role", "otto", "admin")
    assert code == 0 and out.strip() == "user otto is now admin (was operator)"
    entry = store.audit_log(limit=1)[0]
    assert (entry["action"], entry["detail"]) == (
        "user_role_changed", {"user": "otto", "role": "admin", "was": "operator"})
    assert invoke(cfg, "users", "role", "ada", "viewer")[0] == 0  # otto is an admin now
    code, _, err = invoke(cfg, "users", "disable", "otto")
    assert code == 1 and err.strip() == LAST_ADMIN.format("disabling").replace("ada", "otto")
    assert invoke(cfg, "users", "disable", "otto", "--force")[0] == 0
    assert store.user_by_name("otto")["disabled"] == 1
    assert store.audit_log(limit=1)[0]["action"] == "user_disabled"


def test_users_role_refuses_an_unknown_user_or_role(cfg: Path) -> None:
    invoke(cfg, "users", "add", "otto", "--role", "operator", stdin=PASSWORD)
    code, _, err = invoke(cfg, "users", "role", "nobody", "viewer")
    assert code == 1 and err.strip() == ("error: user 'nobody' does not exist: add it with "
                                         "`ivr users add nobody --role ROLE`")
    code, _, err = invoke(cfg, "users", "role", "otto", "root")
    assert code == 2 and "'root' is not one of 'admin', 'operator', 'viewer'" in err


# -- 5. one name added by two admins at once ---------------------------------------------------
def test_a_name_added_by_another_admin_meanwhile_is_one_line(
        cfg: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke(cfg, "users", "add", "otto", "--role", "operator", stdin=PASSWORD)  # the store
    real = cli_users.hash_password

    def racing(password: str) -> str:  # the other admin's add, while this one hashes
        backend.open().add_user("carol", "viewer", "h", T0)
        return real(password)
    monkeypatch.setattr(cli_users, "hash_password", racing)
    code, out, err = invoke(cfg, "users", "add", "carol", "--role", "admin", stdin=PASSWORD)
    assert (code, out, err.strip()) == (1, "", "error: user 'carol' exists already")
    assert backend.open().user_by_name("carol")["role"] == "viewer"


def test_two_adds_of_one_name_at_once_refuse_the_second(backend: Backend) -> None:
    """PostgreSQL: both found no row, the second insert waited for the first and failed on
    the unique name (UniqueViolation, a traceback) instead of ValueError."""
    store = backend.program()
    got = while_held(backend, lambda other: other.add_user("carol", "viewer", "h", T0),
                     lambda: store.add_user("carol", "admin", "h", T0))
    assert isinstance(got, ValueError) and "exists already" in str(got)
    assert store.user_by_name("carol")["role"] == "viewer"
