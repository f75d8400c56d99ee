"""Issue 19 on the sandbox: FastAGI sessions are authenticated.

One silent callee (suffix 30: answers, presses nothing) is called by the real controller. While
that call is in flight, scripts play Asterisk's side of FastAGI against the controller's port,
answering the first STREAM FILE with key 1: a forged session (wrong or missing token), the real
token read from the live channel (AMI Getvar) replayed during the call and after it, and a
session for a claimed attempt that was never dialled. Then the opposition line's route without
its secret. Each must be closed unserved and write nothing; the real call keeps its true
outcome.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ivr import app
from ivr.campaign import planning
from ivr.config import Config
from ivr.store.sqlite import Store
from ivr.telephony import agi_auth
from ivr.telephony.ami import Ami
from ivr.telephony.contract import (ARG_CALL_ID, ARG_CALLBACK_SECRET, ARG_TOKEN,
                                    GLOBAL_CALLBACK_SECRET, ROUTE_CALLBACK, ROUTE_IVR, VAR_TOKEN)
from ivr.telephony.sandbox import Sandbox

from .conftest import add_contacts, fiction, now

SILENT = fiction("30", block="19")
NEVER_DIALLED = fiction("10", block="19")
CALLER = fiction("79", block="19")


async def play_asterisk(port: int, headers: dict[str, str], timeout: float = 10) -> list[str]:
    """Asterisk's side of one FastAGI session: key 1 to the first command, success to every
    later one. Returns the commands the controller sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("".join(f"{k}: {v}\n" for k, v in headers.items()) + "\n").encode())
    commands: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while line := await reader.readline():
                commands.append(line.decode().strip())
                reply = "200 result=49 endpos=800" if len(commands) == 1 else "200 result=0"
                writer.write(f"{reply}\n".encode())
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return commands


def ivr_headers(call_id: str, uniqueid: str, token: str | None) -> dict[str, str]:
    h = {"agi_network": "yes", "agi_network_script": ROUTE_IVR, "agi_uniqueid": uniqueid,
         "agi_callerid": "+33199000000", ARG_CALL_ID: call_id, "agi_arg_2": "HUMAN"}
    return h | ({ARG_TOKEN: token} if token is not None else {})


async def live_token(cfg: Config, channel_id: str) -> str:
    """The token as the live channel holds it (AMI Getvar on the Originate's ChannelId).
    This session is the test's, not the controller's: its debug log (which shows the reply)
    is muted so that the log check below is about the controller alone."""
    ami = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await ami.connect()
    logging.disable(logging.DEBUG)
    try:
        resp = await ami.action({"Action": "Getvar", "Channel": channel_id,
                                 "Variable": VAR_TOKEN})
        return str(resp.get("Value") or "")
    finally:
        ami.close()
        logging.disable(logging.NOTSET)


@dataclass
class Seen:
    """What each hostile session got from the controller, and what the store held."""
    sessions: dict[str, list[str]] = field(default_factory=dict)
    real_token: str = ""
    before_real_session: bool = False  # the forgeries came before Asterisk's own session
    rows_during: list[dict[str, Any]] = field(default_factory=list)
    never_dialled: dict[str, Any] = field(default_factory=dict)


async def _forge_early(cfg: Config, ctl: app.Controller, call: dict[str, Any],
                       seen: Seen) -> None:
    """Right after the Originate, before the callee answers: had any of these been accepted,
    it would have spent the call's session and driven it."""
    port, cid, uid = cfg.agi.port, str(call["id"]), call["channel_id"]
    for _ in range(20):  # the Local channel exists once the Originate is queued
        seen.real_token = await live_token(cfg, uid)
        if seen.real_token:
            break
        await asyncio.sleep(0.05)
    for name, headers in {
        "wrong_token": ivr_headers(cid, uid, "0" * 48),
        "missing_token": ivr_headers(cid, uid, None),
        "hash_as_token": ivr_headers(cid, uid, agi_auth.token_hash(seen.real_token)),
        "other_channel": ivr_headers(cid, uid + "-x", seen.real_token),
    }.items():
        seen.sessions[name] = await play_asterisk(port, headers)
    seen.before_real_session = not ctl.dialer.ivr_active


async def _forge_during(cfg: Config, store: Store, call: dict[str, Any], seen: Seen) -> None:
    port, cid, uid = cfg.agi.port, str(call["id"]), call["channel_id"]
    seen.sessions["replay_during"] = await play_asterisk(
        port, ivr_headers(cid, uid, seen.real_token))
    seen.rows_during = store.q("SELECT * FROM calls")
    # A claimed attempt, with its own token, that this controller never dialled.
    add_contacts(store, [NEVER_DIALLED])
    contact = store.one("SELECT * FROM contacts WHERE number = ?", (NEVER_DIALLED,))
    other = planning.claim(cfg, store, contact, "elsewhere", now())
    assert other.call is not None and other.token
    seen.sessions["not_in_flight"] = await play_asterisk(port, ivr_headers(
        str(other.call["id"]), other.call["channel_id"], other.token))
    seen.never_dialled = store.call(int(other.call["id"])) or {}


async def _until(done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def _scenario(cfg: Config, store: Store) -> Seen:
    add_contacts(store, [SILENT])
    seen = Seen()
    ctl = await app.start(cfg, store)
    try:
        claim = await ctl.dialer.dial(store.one("SELECT * FROM contacts WHERE number = ?",
                                                (SILENT,)))
        assert claim.call is not None
        await _forge_early(cfg, ctl, claim.call, seen)
        await _until(lambda: ctl.dialer.ivr_active, 30)  # the real session has started
        await _forge_during(cfg, store, claim.call, seen)
        await _until(lambda: claim.call["id"] not in ctl.dialer.by_call, 120)
        cid, uid = str(claim.call["id"]), claim.call["channel_id"]
        seen.sessions["replay_after"] = await play_asterisk(
            cfg.agi.port, ivr_headers(cid, uid, seen.real_token))
    finally:
        await ctl.close()
    return seen


@pytest.fixture(scope="module")
def attacked(pbx_cfg: Config) -> tuple[Seen, Store, str]:
    store = Store.memory()
    root = logging.getLogger()
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        seen = asyncio.run(_scenario(pbx_cfg, store))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return seen, store, "\n".join(records)


HOSTILE = ["wrong_token", "missing_token", "hash_as_token", "replay_during", "other_channel",
           "not_in_flight", "replay_after"]


@pytest.mark.parametrize("name", HOSTILE)
def test_every_hostile_session_is_closed_unserved(attacked: tuple[Seen, Store, str],
                                                  name: str) -> None:
    """Not a command, not even HANGUP: on a real channel the dialplan's failsafe follows."""
    seen, _, _ = attacked
    assert seen.sessions[name] == [], seen.sessions[name]


def test_the_forgery_fails_and_the_real_outcome_is_stored(
        attacked: tuple[Seen, Store, str]) -> None:
    seen, store, _ = attacked
    call = store.one("SELECT * FROM calls WHERE number = ?", (SILENT,))
    assert call is not None and len(bytes.fromhex(seen.real_token)) >= 16
    assert (call["outcome"], call["keys"]) == ("no_input", "")  # the silent callee's truth
    assert store.q("SELECT * FROM consents") == []
    assert not store.is_opted_out(SILENT)
    assert seen.before_real_session  # the forgeries raced Asterisk's own session, and lost
    during = next(r for r in seen.rows_during if r["number"] == SILENT)
    assert during["outcome"] is None and during["keys"] == ""


def test_a_claimed_attempt_not_in_flight_here_cannot_be_driven(
        attacked: tuple[Seen, Store, str]) -> None:
    seen, _, _ = attacked
    row = seen.never_dialled
    assert (row["outcome"], row["answered_at"], row["state"]) == (None, None, "dialing")
    assert row["token_hash"] is not None  # not spent by the refused session


def test_tokens_never_reach_the_logs_or_the_store(attacked: tuple[Seen, Store, str]) -> None:
    seen, store, logs = attacked
    assert "session refused" in logs and seen.real_token not in logs
    dump = "\n".join(store.db.conn.iterdump())
    assert seen.real_token not in dump
    assert agi_auth.token_hash(seen.real_token) not in dump  # spent: its hash is gone too


async def _callback_sessions(cfg: Config, store: Store) -> dict[str, list[str]]:
    ctl = await app.start(cfg, store)
    base = {"agi_network": "yes", "agi_network_script": ROUTE_CALLBACK, "agi_callerid": CALLER}
    try:
        return {name: await play_asterisk(cfg.agi.port, base | extra) for name, extra in {
            "no_secret": {}, "empty": {ARG_CALLBACK_SECRET: ""},
            "wrong": {ARG_CALLBACK_SECRET: "not-the-callback-secret"}}.items()}
    finally:
        await ctl.close()


def test_a_callback_session_without_the_secret_writes_nothing(pbx_cfg: Config) -> None:
    store = Store.memory()
    sessions = asyncio.run(_callback_sessions(pbx_cfg, store))
    # nothing written, nothing sent: a real caller (the secret changed without `dialplan
    # reload`) gets the dialplan's failsafe, which asks for the key and journals them
    assert sessions == {"no_secret": [], "empty": [], "wrong": []}
    assert not store.is_opted_out(CALLER) and store.q("SELECT * FROM optouts") == []


def test_the_pbx_holds_the_callback_secret_in_a_file_only_it_can_read(pbx_cfg: Config) -> None:
    box = Sandbox(pbx_cfg)
    assert (box.etc / "extensions.conf").stat().st_mode & 0o777 == 0o600
    shown = box.cli("dialplan show globals").replace(" ", "")
    assert f"{GLOBAL_CALLBACK_SECRET}={app.callback_secret(pbx_cfg)}" in shown
