"""Console users (ivr/web_users.py) and `ivr users` (ivr/cli_users.py): argon2id hashes, API
tokens kept as SHA-256 only, roles, the audit. The commands that write users, tokens and audit
rows run on both backends (conftest.backend_cfg_file)."""
from __future__ import annotations

import hashlib
import os
import pty
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from ivr import web_users
from ivr.cli import cli
from ivr.store import Store

from conftest import Backend

PASSWORD = "correct horse battery"
MAIN = "import sys; from ivr.cli import main; sys.argv[0] = 'ivr'; main()"  # the `ivr` script


def invoke(cfg_file: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--config", str(cfg_file), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cfg(backend_cfg_file: Path) -> Path:
    """The shipped config over a SQLite file or a PostgreSQL database (conftest.backend)."""
    return backend_cfg_file


def test_hashes_are_argon2id_salted_and_verify() -> None:
    h1, h2 = web_users.hash_password(PASSWORD), web_users.hash_password(PASSWORD)
    assert h1.startswith("$argon2id$") and h1 != h2  # each with its own salt
    params = PasswordHasher().check_needs_rehash(h1)
    assert params is False and not web_users.needs_rehash(h1)
    assert web_users.verify_password(h1, PASSWORD)
    assert not web_users.verify_password(h1, PASSWORD + "x")
    assert not web_users.verify_password(None, PASSWORD)  # no such user: same work, False
    assert not web_users.verify_password("not-a-hash", PASSWORD)


def test_tokens_are_random_and_stored_as_sha256() -> None:
    a, b = web_users.new_token(), web_users.new_token()
    assert a != b and a.startswith("ivr_") and len(a) >= 40
    assert web_users.token_hash(a) == hashlib.sha256(a.encode()).hexdigest()


@pytest.mark.parametrize("role, allowed", [
    ("viewer", {"view"}),
    ("operator", {"view", "control", "contacts", "optout", "prompts"}),
    ("admin", set(web_users.ACTIONS))])
def test_roles(role: str, allowed: set[str]) -> None:
    assert {a for a in web_users.ACTIONS if web_users.can(role, a)} == allowed


def test_an_unknown_action_is_an_error_and_an_unknown_role_may_do_nothing() -> None:
    with pytest.raises(ValueError, match="^action: 'start' is not one of"):
        web_users.can("admin", "start")
    assert not any(web_users.can("root", a) for a in web_users.ACTIONS)


def test_users_add_from_stdin_then_login_hash_verifies(cfg: Path, backend: Backend) -> None:
    cfg_file = cfg
    store = backend.open()  # an existing store: a new one is noted on stderr (test_cli_commands)
    code, out, err = invoke(cfg_file, "users", "add", "alice", "--role", "operator",
                            stdin=PASSWORD + "\n")
    assert (code, err) == (0, "") and "alice added (operator)" in out
    user = store.user_by_name("alice")
    assert user is not None and user["role"] == "operator"
    assert user["password_hash"].startswith("$argon2id$") and PASSWORD not in str(user)
    assert web_users.verify_password(user["password_hash"], PASSWORD)
    assert store.audit_log(limit=1)[0]["detail"] == {"user": "alice", "role": "operator"}


@pytest.mark.parametrize("args, stdin, message", [
    (("users", "add", "bob", "--role", "root"), PASSWORD, "Invalid value for '--role'"),
    (("users", "add", "bob", "--role", "viewer"), "short\n", "password: 5 characters: use at "
                                                           "least 12"),
    (("users", "add", "b b", "--role", "viewer"), PASSWORD, "NAME: 'b b'"),
    (("users", "token", "nobody"), "", "user 'nobody' does not exist")])
def test_bad_input_is_one_line_naming_what_to_fix(cfg_file: Path, args: tuple[str, ...],
                                                   stdin: str, message: str) -> None:
    code, out, err = invoke(cfg_file, *args, stdin=stdin)
    assert code != 0 and message in err


def test_a_user_is_added_once(cfg: Path, backend: Backend) -> None:
    cfg_file = cfg
    assert invoke(cfg_file, "users", "add", "alice", "--role", "viewer", stdin=PASSWORD)[0] == 0
    code, _, err = invoke(cfg_file, "users", "add", "alice", "--role", "admin", stdin=PASSWORD)
    assert code == 1 and err.strip() == "error: user 'alice' exists already"
    assert backend.open().user_by_name("alice")["role"] == "viewer"


def test_users_token_prints_it_once_and_stores_only_its_hash(cfg: Path,
                                                             backend: Backend) -> None:
    cfg_file = cfg
    invoke(cfg_file, "users", "add", "bot", "--role", "viewer", stdin=PASSWORD)
    code, out, _ = invoke(cfg_file, "users", "token", "bot")
    token = out.strip()
    assert code == 0 and token.startswith("ivr_") and "\n" not in token
    store = backend.open()
    assert store.one("SELECT token_hash FROM api_tokens")["token_hash"] == \
        web_users.token_hash(token)
    assert token not in str(store.q("SELECT * FROM api_tokens"))
    assert token not in str(store.q("SELECT * FROM audit"))
    user = store.user_by_token(web_users.token_hash(token), datetime.now(timezone.utc))
    assert user is not None and user["name"] == "bot"


def test_disable_kills_tokens_and_is_audited(cfg: Path, backend: Backend) -> None:
    cfg_file = cfg
    invoke(cfg_file, "users", "add", "bot", "--role", "operator", stdin=PASSWORD)
    token = invoke(cfg_file, "users", "token", "bot")[1].strip()
    assert invoke(cfg_file, "users", "disable", "bot")[0] == 0
    store = backend.open()
    assert store.user_by_token(web_users.token_hash(token), datetime.now(timezone.utc)) is None
    assert store.audit_log(limit=1)[0]["action"] == "user_disabled"
    code, _, err = invoke(cfg_file, "users", "token", "bot")
    assert code == 1 and "disabled" in err
    _, out, _ = invoke(cfg_file, "users", "list")
    assert "bot\toperator\tdisabled" in out and "argon2" not in out


def test_passwd_replaces_the_hash(cfg: Path, backend: Backend) -> None:
    cfg_file = cfg
    invoke(cfg_file, "users", "add", "alice", "--role", "admin", stdin=PASSWORD)
    assert invoke(cfg_file, "users", "passwd", "alice", stdin="another long secret")[0] == 0
    h = backend.open().user_by_name("alice")["password_hash"]
    assert web_users.verify_password(h, "another long secret")
    assert not web_users.verify_password(h, PASSWORD)


def test_password_from_a_terminal_is_asked_twice(cfg_file: Path) -> None:
    """A real pseudo-terminal: the prompt hides the input and wants it confirmed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: `ivr users add` on the terminal
        os.execv(sys.executable, [sys.executable, "-c", MAIN, "--config", str(cfg_file),
                                  "users", "add", "tty", "--role", "viewer"])
    seen = b""
    for answer in (PASSWORD, PASSWORD):
        while b": " not in seen.rsplit(b"\n", 1)[-1]:
            seen += os.read(fd, 1024)
        os.write(fd, answer.encode() + b"\n")
        seen += os.read(fd, 1024)
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"Repeat for confirmation" in seen and PASSWORD.encode() not in seen
    tty = Store.open(cfg_file.parent / "t.db").user_by_name("tty")
    assert web_users.verify_password(tty["password_hash"], PASSWORD)


def test_a_piped_password_that_is_not_utf8_is_one_line(cfg_file: Path) -> None:
    """Bytes that are not UTF-8 on stdin gave a UnicodeEncodeError traceback at the hash."""
    got = subprocess.run([sys.executable, "-c", MAIN, "--config", str(cfg_file), "users", "add",
                          "bob", "--role", "viewer"], input=b"\xffabcdefghijklmnop\n",
                         capture_output=True, timeout=60)
    err = got.stderr.decode()
    assert got.returncode == 1 and "Traceback" not in err, err
    assert err.startswith("error: password: holds bytes that are not UTF-8 text"), err
    assert Store.open(cfg_file.parent / "t.db").user_by_name("bob") is None


def test_the_group_is_registered_on_the_main_command() -> None:
    """`ivr users --help` in a fresh process (the `ivr` script's entry point)."""
    out = subprocess.run([sys.executable, "-c", MAIN, "users", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "add" in out and "token" in out


def test_every_user_command_audits_who_ran_it(cfg: Path, backend: Backend,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Each audit row a `users` command writes names the system user behind it, as a rights
    command's (records/acting.cli_actor): adding a user, issuing and revoking a token, a
    role, a password, a disable."""
    monkeypatch.setenv("SUDO_USER", "root-admin")
    cfg_file = cfg
    assert invoke(cfg_file, "users", "add", "bot", "--role", "viewer", stdin=PASSWORD)[0] == 0
    assert invoke(cfg_file, "users", "token", "bot")[0] == 0
    assert invoke(cfg_file, "users", "revoke", "bot", "--all")[0] == 0
    assert invoke(cfg_file, "users", "role", "bot", "operator")[0] == 0
    assert invoke(cfg_file, "users", "passwd", "bot", stdin="another long secret")[0] == 0
    assert invoke(cfg_file, "users", "token", "bot")[0] == 0
    assert invoke(cfg_file, "users", "disable", "bot")[0] == 0  # revokes that token too
    rows = [(r["action"], r["actor"]) for r in backend.open().q(
        "SELECT action, actor FROM audit ORDER BY id")]
    assert [a for a, _ in rows] == ["user_added", "api_token_issued", "api_token_revoked",
                                    "user_role_changed", "user_password_changed",
                                    "api_token_issued", "api_token_revoked", "user_disabled"]
    assert {actor for _, actor in rows} == {"root-admin (cli)"}
