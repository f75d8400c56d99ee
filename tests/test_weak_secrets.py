"""Secrets too short to be secret are refused where they would be taken for good: a new
store's opposition key (the hashes kept after an erasure could be brute-forced back to the
numbers, and the key can never change), `ivr web`'s session secret (a guessed one forges an
admin's cookie). A store already keyed with a short key still opens, with a warning."""
from __future__ import annotations

import logging
import socket
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import Backend
from ivr.cli import cli
from ivr.errors import StoreError
from ivr.store import sqlite_optout_key
from ivr.store.sqlite import Store

NEW_STORE = ("IVR_OPTOUT_KEY is 1 characters long: a new store's opposition key needs at "
             "least 32 random characters (e.g. `openssl rand -hex 32`)")


def _cli(cfg: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(cfg), *args])


def test_a_new_store_refuses_a_short_opposition_key(
        backend: Backend, backend_cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "a")
    result = _cli(backend_cfg_file, "optout", "add", "+33199000010", "--via", "post")
    assert result.exit_code == 1, result.output
    line, = result.output.splitlines()
    assert line.startswith(f"error: {NEW_STORE}"), line
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)  # a long key: taken, nothing was recorded
    assert _cli(backend_cfg_file, "optout", "add", "+33199000010", "--via", "post").exit_code == 0


def test_a_store_already_keyed_with_a_short_key_opens_with_a_warning(
        backend: Backend, backend_cfg_file: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Refusing it would lock the operator out: the key can never change."""
    backend.key = b"a"
    # warned once per process: in this test's
    monkeypatch.setattr(sqlite_optout_key, "_warned", set(), raising=False)
    store = backend.open() if backend.url else Store.open(backend.home / "ivr.db",
                                                          optout_key=b"a")
    store.add_optout("+33199000010", "post", datetime.now(timezone.utc))
    monkeypatch.setenv("IVR_OPTOUT_KEY", "a")
    with caplog.at_level(logging.WARNING):
        result = _cli(backend_cfg_file, "optout", "add", "+33199000011", "--via", "post")
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "IVR_OPTOUT_KEY" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(
        "IVR_OPTOUT_KEY is 1 characters long: weaker than the 32 random characters"), warned


def test_a_demo_store_refuses_a_short_key_as_its_first_real_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store keyed with the key beside it and no opposition yet takes the operator's key
    for good (sqlite._admit_key): that is its first real key, refused if short."""
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    path = tmp_path / "ivr.db"
    Store.open(path).db.conn.close()  # the key beside it
    monkeypatch.setenv("IVR_OPTOUT_KEY", "a")
    with pytest.raises(StoreError, match=NEW_STORE.replace("(", "\\(").replace(")", "\\)")):
        Store.open(path)
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    Store.open(path).add_optout("+33612345678", "web", datetime.now(timezone.utc))


def test_a_new_sqlite_store_refuses_a_short_key_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVR_OPTOUT_KEY", raising=False)
    (tmp_path / "secrets").mkdir()
    key = tmp_path / "secrets" / "optout.key"
    key.write_text("short\n")
    (tmp_path / "db").mkdir()
    with pytest.raises(StoreError, match=f"store.optout_key_file {key} is 5 characters long: "
                                         "a new store's opposition key needs at least 32"):
        Store.open(tmp_path / "db" / "ivr.db", optout_key_file=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ivr_web_refuses_a_short_session_secret(
        cfg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def started(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        self.started = True  # had it got this far: served and stopped at once
    monkeypatch.setattr(uvicorn.Server, "run", started)
    monkeypatch.setenv("IVR_WEB_SECRET", "a")
    result = _cli(cfg_file, "web", "--port", str(_free_port()))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == ["error: IVR_WEB_SECRET is 1 characters long: give it at least 32 random "
                      "ones (e.g. `openssl rand -hex 32`), or unset it for a random key of "
                      "this process"], result.output
    assert "console on" not in result.output
