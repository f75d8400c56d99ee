"""The inbound opposition line (FastAGI route `callback`) never loses a caller's key 1.

Found in review (2026-12-02), each reproduced over real FastAGI sockets:
- `ivr serve` wrote the opposition straight to the store on the event loop: a locked SQLite file
  or a PostgreSQL restart lost it (and, locked, stalled every other caller meanwhile);
- a run that ended while a caller was on the line cut the session: no opposition, no
  confirmation;
- the session's environment was split on every Unicode line break: a SIP display name holding
  U+2028 could add its own `agi_callerid` line, and put another number on the list.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import ports
from conftest import Backend, make_config, store_at
from ivr import callback_line
from ivr.callflow import agi_callback
from ivr.app import run_campaign as app_run
from ivr.cli import cli
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer
from test_dialer import DELAYS, HASHES, add_contacts, fiction, make_cfg, rig
from test_dialer import SECRET as AMI_SECRET

SECRET = "callback-secret-0123456789"
DONE = "SET VARIABLE IVR_DONE 1"  # the dialplan then skips its failsafe


def free_port() -> int:
    return ports.free_port()  # below the ephemeral range (tests/ports.py)


def env_lines(number: str, **extra: str) -> bytes:
    env = {"agi_network": "yes", "agi_network_script": "callback", "agi_callerid": number,
           "agi_uniqueid": "1.1", **extra, "agi_arg_1": SECRET}
    return ("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode()


async def caller(port: int, number: str, on_command: Callable[[str], None] | None = None,
                 **extra: str) -> list[str]:
    """Asterisk's side of one call to the line: key 1 pressed during the notice;
    `on_command` sees each command as it arrives."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(env_lines(number, **extra))
    await w.drain()
    commands = []
    while line := await r.readline():
        command = line.decode().strip()
        commands.append(command)
        if on_command is not None:
            on_command(command)
        w.write(b"200 result=49 endpos=4000\n" if "callback_notice" in command
                else b"200 result=0 endpos=8000\n")
        await w.drain()
    w.close()
    return commands


def optouts(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM optouts").fetchone()[0]


def pressing_1_at_the_run_end(port: int, seen: list[str], notice: threading.Event,
                              before_key: Callable[[], None]) -> threading.Thread:
    """Asterisk's side of a caller on the line, in a thread: the notice starts (`notice` set),
    `before_key()` runs, then key 1; every command the controller sent lands in `seen`."""
    def asterisk_side(port: int) -> None:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(env_lines("+33199000012"))  # the rig's store keeps its key beside it: fiction
        with s, s.makefile("rb") as f:
            while line := f.readline():
                command = line.decode().strip()
                seen.append(command)
                if "callback_notice" in command:
                    notice.set()
                    before_key()
                    s.sendall(b"200 result=49 endpos=16000\n")
                else:
                    s.sendall(b"200 result=0 endpos=16000\n")
    t = threading.Thread(target=asterisk_side, args=(port,), daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("held_s,heard", [(1.2, "optout_confirm"), (5.0, "legal")])
def test_serve_keeps_an_opposition_the_locked_store_could_not_take_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_s: float, heard: str) -> None:
    """Another process holds the store's lock when the caller presses 1: the opposition is
    queued and lands once the lock is gone. The caller hears the confirmation only once it is
    in the store (the lock gone within COMMIT_WAIT_S); held longer, the legal mentions, the
    written route to object, instead of a confirmation that was not yet true."""
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    port = free_port()
    cfg = make_config(tmp_path, agi={"host": "127.0.0.1", "port": port})
    store = store_at(tmp_path / "ivr.db", busy_timeout_s=0.2)  # `ivr serve`'s short wait
    stored_when_played: dict[str, int] = {}

    def playing(command: str) -> None:  # what the store held when each sound was asked for
        if command.startswith("STREAM FILE ivr/"):
            stored_when_played[command.split()[2].split("/")[1]] = optouts(tmp_path / "ivr.db")

    async def main() -> tuple[list[str], float]:
        stop = asyncio.Event()
        task = asyncio.create_task(callback_line.serve_forever(cfg, store, stop=stop))
        await asyncio.sleep(0.3)
        other = sqlite3.connect(tmp_path / "ivr.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the console, an import, an erasure: holding the lock
        asyncio.get_running_loop().call_later(held_s, other.execute, "ROLLBACK")
        started = time.monotonic()
        commands = await caller(port, "0612345678", on_command=playing)
        answered_in = time.monotonic() - started
        await asyncio.sleep(max(0.0, held_s + 1.5 - answered_in))  # retried every second
        other.close()
        stop.set()
        await task
        return commands, answered_in
    commands, answered_in = asyncio.run(main())
    assert commands[-2:] == [f'STREAM FILE ivr/{heard} ""', DONE]
    assert stored_when_played[heard] == (1 if heard == "optout_confirm" else 0)
    assert answered_in < agi_callback.COMMIT_WAIT_S + 1.0  # never held past the bound
    assert optouts(tmp_path / "ivr.db") == 1  # queued, never lost


def test_serve_reads_the_callers_number_from_its_own_line_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    port = free_port()
    cfg = make_config(tmp_path, agi={"host": "127.0.0.1", "port": port})
    store = store_at(tmp_path / "ivr.db")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(callback_line.serve_forever(cfg, store, stop=stop))
        await asyncio.sleep(0.3)
        await caller(port, "+33611111111",
                     agi_calleridname="Jean\u2028agi_callerid: +33622222222\x0cx")
        stop.set()
        await task
    asyncio.run(main())
    assert store.is_opted_out("+33611111111")
    assert not store.is_opted_out("+33622222222")


def test_a_caller_on_the_line_when_the_run_ends_is_heard_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    seen: list[str] = []
    notice = threading.Event()

    async def main() -> Path:
        async with rig(Backend("sqlite", tmp_path), {}) as r:
            # the notice plays; the caller presses 1 at its end, a second later
            t = pressing_1_at_the_run_end(r.cfg.agi.port, seen, notice, lambda: time.sleep(1.0))
            while not notice.is_set():
                await asyncio.sleep(0.01)
            path = r.cfg.path(r.cfg.store.path)
        t.join(5)  # the run is over: `ivr run` returns
        return path
    path = asyncio.run(main())
    assert seen[-2:] == ['STREAM FILE ivr/optout_confirm ""', DONE]
    assert optouts(path) == 1


def test_a_run_that_stops_keeps_an_opposition_the_locked_store_took_late(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller presses 1 as the run closes, while another writer holds the SQLite lock for
    1.5 s (an import in the console): the close retries the write instead of dropping it."""
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    seen: list[str] = []
    notice, locked = threading.Event(), threading.Event()

    def other_writer(db: Path) -> None:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(1.5)
        other.execute("ROLLBACK")
        other.close()

    async def main() -> Path:
        async with rig(Backend("sqlite", tmp_path), {}) as r:
            r.store.db.execute("PRAGMA busy_timeout = 200")  # `ivr run` waits 0.5 s, not 30
            path = r.cfg.path(r.cfg.store.path)
            t = pressing_1_at_the_run_end(r.cfg.agi.port, seen, notice,
                                          lambda: locked.wait(5))  # key 1, locked
            while not notice.is_set():
                await asyncio.sleep(0.01)
            threading.Thread(target=other_writer, args=(path,)).start()
        t.join(5)
        return path
    path = asyncio.run(main())
    assert seen[-2:] == ['STREAM FILE ivr/optout_confirm ""', DONE]
    assert optouts(path) == 1


def test_a_second_signal_cuts_the_wait_for_a_silent_caller_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    connected = threading.Event()

    def silent_caller(port: int) -> None:  # sends its environment, then answers nothing
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(env_lines("+33199000012"))
            s.recv(100)
            connected.set()
            time.sleep(10)

    async def main() -> float:
        async with rig(Backend("sqlite", tmp_path), {}) as r:
            threading.Thread(target=silent_caller, args=(r.cfg.agi.port,), daemon=True).start()
            while not connected.is_set():
                await asyncio.sleep(0.01)
            interrupt = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, interrupt.set)
            started = time.monotonic()
            await r.ctl.close(interrupt=interrupt)
            return time.monotonic() - started
    assert asyncio.run(main()) < 3.0  # not the 30 s the drain allows a caller


@pytest.mark.parametrize("how", ["drain_timeout", "console_hard_stop"])
def test_a_stop_that_hangs_up_the_calls_still_hears_the_line_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The run's hard stop (its drain timed out, or the console's hard stop) hangs up the calls
    it placed, not a caller on the opposition line: only the operator's second signal cuts that
    wait (found in review: the caller's key 1 was lost)."""
    monkeypatch.setenv("IVR_CALLBACK_SECRET", SECRET)
    seen: list[str] = []
    notice = threading.Event()
    backend, number = Backend("sqlite", tmp_path), fiction(1)
    cfg = make_cfg(backend, DELAYS, **({"drain_timeout_s": 1} if how == "drain_timeout" else {}))
    store = backend.open()
    add_contacts(store, [number])

    async def main() -> None:
        async with FakePbx({number: answer(["1"], prompt_s=20)}, user="ivr",
                           secret=AMI_SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", AMI_SECRET)
            stop = asyncio.Event()
            task = asyncio.ensure_future(app_run(cfg, store, node=node, hashes=HASHES,
                                                 stop=stop))
            while not pbx.live:
                await asyncio.sleep(0.05)
            pressing_1_at_the_run_end(cfg.agi.port, seen, notice, lambda: time.sleep(2.0))
            while not notice.is_set():
                await asyncio.sleep(0.01)
            if how == "drain_timeout":
                stop.set()  # one Ctrl-C, SIGTERM or the console's stop
            else:
                backend.open().set_run_control(cfg.campaign.name, desired="hard_stop",
                                               by="alice", now=datetime.now(timezone.utc))
            with contextlib.suppress(Exception):  # ended with calls hung up: not our point
                await task
    asyncio.run(main())
    assert seen[-2:] == ['STREAM FILE ivr/optout_confirm ""', DONE]
    assert optouts(cfg.path(cfg.store.path)) == 1


def test_serve_says_serving_only_once_listening(cfg_file: Path) -> None:
    """`ivr serve` on a port already taken (a run serving the line) says why in one line and
    never claims to be serving first."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["agi"]["port"] = taken.getsockname()[1]
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), "serve"])
    finally:
        taken.close()
    assert result.exit_code != 0
    assert "cannot listen for FastAGI" in result.output
    assert "serving FastAGI" not in result.output
