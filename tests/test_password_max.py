"""A password `ivr users add` or `ivr users passwd` sets is one the console's login form takes:
the form refuses a password over web_users.MAX_PASSWORD characters (400, before the hash), so
the commands refuse it too, in one line naming the limit (before: a 1,120-character password was
set, and its user could never log in). The CLI and the console share a store of each backend."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import Backend, shipped_config
from ivr.cli import cli
from ivr.store import Store
from ivr.web import auth
from ivr.web_users import MAX_PASSWORD, verify_password
import web_fixture
from web_fixture import PASSWORDS, Web, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Web, Path]:
    """The console, and a config file for `ivr` over the same store (and opposition key)."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    monkeypatch.setattr(web_fixture, "store_at", lambda path, busy_timeout_s: Store.open(
        path, optout_key=backend.key, busy_timeout_s=busy_timeout_s))
    console = make_web(tmp_path, monkeypatch, backend)
    (tmp_path / "cli").mkdir()
    return console, shipped_config(tmp_path / "cli", {"path": str(console.path)}
                                   if console.path else backend.section())


def ivr(cfg_file: Path, *args: str, password: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), *args], input=password + "\n")
    return result.exit_code, result.output


def test_the_limit_is_the_login_forms() -> None:
    assert MAX_PASSWORD == auth.PASSWORD_FIELD_MAX == 1024
    assert auth.login_fields_ok("ada", "p" * MAX_PASSWORD)
    assert not auth.login_fields_ok("ada", "p" * (MAX_PASSWORD + 1))


def test_a_password_longer_than_the_login_form_takes_is_refused(web: tuple[Web, Path]) -> None:
    console, cfg_file = web
    code, out = ivr(cfg_file, "users", "add", "zoe", "--role", "viewer", password="p" * 1120)
    assert (code, out) == (1, "error: password: 1120 characters: use at most 1024\n")
    assert console.store.user_by_name("zoe") is None
    code, out = ivr(cfg_file, "users", "passwd", "otto", password="p" * 1025)
    assert (code, out) == (1, "error: password: 1025 characters: use at most 1024\n")
    otto = console.store.user_by_name("otto")
    assert otto is not None and verify_password(otto["password_hash"], PASSWORDS["otto"])
    login(console.client(), "otto")  # unchanged


def test_a_password_of_the_limit_is_set_and_logs_in(web: tuple[Web, Path]) -> None:
    console, cfg_file = web
    longest = "q" * MAX_PASSWORD
    code, out = ivr(cfg_file, "users", "add", "zoe", "--role", "viewer", password=longest)
    assert code == 0 and "zoe added (viewer)" in out, out
    login(console.client(), "zoe", longest)  # 303 from the form
