"""Issue 7.1: real processes, real signals. Every attempt ends with exactly one outcome and no
number is dialled twice, whatever breaks."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from ivr import app
from ivr.telephony.ami import Ami
from ivr.config import Config
from ivr.telephony.sandbox import Sandbox
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction, itest_config_dict


class OriginateCounter:
    """A second AMI session that counts the IVR-side channels Asterisk creates."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ids: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        ami = Ami(self.cfg.pbx.host, self.cfg.pbx.port, self.cfg.pbx.user,
                  app.ami_secret(self.cfg), events={"Hangup"})
        await ami.connect()
        try:
            while not stop.is_set():
                ev = await ami.next_event(0.2)
                uid = ev.get("Uniqueid", "") if ev is not None else ""
                if uid.startswith("ivr-") and not uid.endswith("-2"):
                    self.ids.append(uid)  # one Hangup per channel that existed
        finally:
            ami.close()


def write_cfg(tmp_path: Path, pbx_cfg: Config, **over: Any) -> Path:
    data = itest_config_dict(tmp_path, **over)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def rows(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY id")]


def assert_one_outcome_each_and_no_double_dial(calls: list[dict], hangups: list[str]) -> None:
    assert all(c["outcome"] is not None for c in calls)
    assert len({c["channel_id"] for c in calls}) == len(calls)
    # Each attempt's channel existed at most once: nothing was originated twice.
    assert len(hangups) == len(set(hangups))
    assert set(hangups) <= {c["channel_id"] for c in calls}
    by_number: dict[str, list[int]] = {}
    for c in calls:
        by_number.setdefault(c["number"], []).append(c["attempt"])
    for attempts in by_number.values():
        assert attempts == list(range(1, len(attempts) + 1))


def test_sigkill_with_50_calls_in_flight_then_run_again(pbx_cfg: Config,
                                                        tmp_path: Path) -> None:
    cfg_file = write_cfg(tmp_path, pbx_cfg, dialer__max_concurrent=60,
                         dialer__calls_per_second=60, dialer__amd=False)
    numbers = [fiction("30", block=f"{20 + i:02d}") for i in range(60)]
    (tmp_path / "l.csv").write_text("number\n" + "\n".join(numbers) + "\n")
    env = dict(os.environ)
    subprocess.run(["ivr", "--config", str(cfg_file), "contacts", "import",
                    str(tmp_path / "l.csv"), "--source", "s", "--basis", "consent"],
                   check=True, env=env, capture_output=True)
    db = tmp_path / "itest.db"

    async def scenario() -> list[str]:
        stop = asyncio.Event()
        counter = OriginateCounter(pbx_cfg)
        watch = asyncio.create_task(counter.run(stop))
        proc = await asyncio.create_subprocess_exec(
            "ivr", "--config", str(cfg_file), "run", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            live = [c for c in rows(db) if c["outcome"] is None] if db.exists() else []
            if len(live) >= 50:
                break
        assert len(live) >= 50
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        again = await asyncio.create_subprocess_exec(
            "ivr", "--config", str(cfg_file), "run", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(again.communicate(), 240)
        assert again.returncode == 0, err
        await asyncio.sleep(1)
        stop.set()
        await watch
        return counter.ids
    hangups = asyncio.run(scenario())
    calls = rows(db)
    assert_one_outcome_each_and_no_double_dial(calls, hangups)
    killed = [c for c in calls if c["stage"] == "reconciled"]
    assert len(killed) >= 50  # settled from Asterisk's state by the second run
    assert all(c["outcome"] == "error" for c in killed)
    # The contacts whose call was cut get a safe retry, and every contact ends settled.
    statuses = {r[0] for r in sqlite3.connect(db).execute("SELECT status FROM contacts")}
    assert statuses <= {"done", "exhausted"}


def test_asterisk_restart_mid_run(pbx_cfg: Config) -> None:
    cfg = dataclasses.replace(pbx_cfg, dialer=dataclasses.replace(
        pbx_cfg.dialer, max_concurrent=10, amd=False))
    store = Store.memory()
    numbers = [fiction("30", block=f"3{i}") for i in range(6)]
    add_contacts(store, numbers)
    sandbox = Sandbox(cfg)
    timing = app.sandbox_sim_timing(cfg)
    restarted: list[Any] = []

    def restart() -> None:
        assert sandbox.down()
        sandbox.up(sim_timing=timing)

    def on_tick(ctl: Any) -> None:
        answered = store.q("SELECT id FROM calls WHERE answered_at IS NOT NULL")
        if len(answered) >= 6 and not restarted:
            restarted.append(asyncio.get_running_loop().run_in_executor(None, restart))
    report, ctl = asyncio.run(app.run_campaign(cfg, store, on_tick=on_tick))
    calls = store.q("SELECT * FROM calls ORDER BY id")
    assert restarted and restarted[0].result() is None  # the restart itself went through
    assert ctl.ami.reconnects >= 1, [(c["outcome"], c["stage"], c["hangup_cause"])
                                     for c in calls]
    assert all(c["outcome"] is not None for c in calls)
    assert len({c["channel_id"] for c in calls}) == len(calls)
    cut = [c for c in calls if c["attempt"] == 1]
    assert [(c["outcome"], bool(c["retry_at"])) for c in cut] == [("error", True)] * 6, \
        [(c["outcome"], c["stage"], c["retry_at"]) for c in calls]  # a fault: retried
    second = [c for c in calls if c["attempt"] == 2]
    assert {c["number"] for c in second} == set(numbers)  # the run carried on
    assert [c["outcome"] for c in second] == ["no_input"] * 6, \
        [(c["outcome"], c["stage"], c["hangup_cause"]) for c in second]


class FreezableProxy:
    """A TCP proxy to AMI that can go silent without closing: a dead link, not a closed one."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = asyncio.Event()
        self.connections = 0

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        ur, uw = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if self.frozen.is_set():
                    continue  # swallowed: the peer never learns
                dst.write(data)
                await dst.drain()
            dst.close()
        await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)


def test_silently_dead_ami_is_detected_and_recovered(pbx_cfg: Config) -> None:
    async def scenario() -> tuple[float, bool]:
        proxy = FreezableProxy((pbx_cfg.pbx.host, pbx_cfg.pbx.port))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ami = Ami("127.0.0.1", port, pbx_cfg.pbx.user, app.ami_secret(pbx_cfg),
                  heartbeat_s=1.0)
        await ami.connect()
        proxy.frozen.set()
        t0 = time.monotonic()
        while ami.connected and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        detected = time.monotonic() - t0
        proxy.frozen.clear()
        back = await ami.wait_connected(10)
        alive = back and await ami.ping()
        ami.close()
        server.close()
        return detected, alive
    detected, alive = asyncio.run(scenario())
    assert detected < 3.0  # heartbeat 1 s: a missing Pong is noticed within two beats
    assert alive


def test_dropped_ami_connection_fails_pending_actions_and_reconnects(pbx_cfg: Config) -> None:
    # The pending action goes through a frozen proxy, so no answer can come before the drop
    # (a WaitEvent sent straight to Asterisk was answered by any unrelated event).
    async def scenario() -> tuple[str, bool]:
        proxy = FreezableProxy((pbx_cfg.pbx.host, pbx_cfg.pbx.port))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ami = Ami("127.0.0.1", port, pbx_cfg.pbx.user, app.ami_secret(pbx_cfg))
        await ami.connect()
        proxy.frozen.set()
        pending = asyncio.create_task(ami.action({"Action": "Ping"}, timeout=60))
        await asyncio.sleep(0.3)
        assert not pending.done()
        proxy.frozen.clear()
        ami._mgr.protocol.transport.abort()  # the link drops under a pending action
        try:
            await asyncio.wait_for(pending, 20)
            outcome = "answered"
        except asyncio.TimeoutError:
            outcome = "hung"
        except Exception as exc:
            outcome = type(exc).__name__
        back = await ami.wait_connected(10)
        alive = back and await ami.ping()
        ami.close()
        server.close()
        return outcome, alive
    outcome, alive = asyncio.run(scenario())
    assert outcome in ("AmiDisconnected", "PbxError")  # failed, not hung forever
    assert alive


def test_locked_database_pauses_and_loses_nothing(pbx_cfg: Config, tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    cfg = dataclasses.replace(pbx_cfg, store=dataclasses.replace(pbx_cfg.store, path=str(db)))
    store = Store.open(db, busy_timeout_s=0.3)
    numbers = [fiction("20", block=f"4{i}") for i in range(4)]
    add_contacts(store, numbers)
    locker: list[subprocess.Popen] = []

    def on_tick(ctl: Any) -> None:
        if not locker and store.q("SELECT id FROM calls WHERE answered_at IS NOT NULL"):
            locker.append(subprocess.Popen([
                "python3", "-c", "import sqlite3, time; c = sqlite3.connect(%r, "
                "isolation_level=None); c.execute('BEGIN EXCLUSIVE'); time.sleep(15)" % str(db)]))
    report, ctl = asyncio.run(app.run_campaign(cfg, store, on_tick=on_tick))
    locker[0].wait()
    outcomes = [c["outcome"] for c in store.q("SELECT outcome FROM calls")]
    assert outcomes == ["declined"] * 4
    assert "locked" in report.paused


def test_full_disk_pauses_and_loses_nothing(pbx_cfg: Config, tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        db = mnt / "full.db"
        cfg = dataclasses.replace(pbx_cfg, store=dataclasses.replace(pbx_cfg.store,
                                                                     path=str(db)))
        store = Store.open(db, busy_timeout_s=0.3, optout_key=b"k")
        numbers = [fiction("10", block=f"5{i}") for i in range(3)]
        add_contacts(store, numbers)
        filler = mnt / "filler"
        filled: list[bool] = []

        def fill() -> None:
            # Unbuffered, and the open inside the try: the disk may already be full (the WAL)
            # or a buffered close flush it again; either raised out of here before, the space
            # never came back and the run waited for it for good.
            try:
                with filler.open("wb", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * 65536)
            except OSError:
                pass

        def on_tick(ctl: Any) -> None:
            if not filled and store.q("SELECT id FROM calls WHERE answered_at IS NOT NULL"):
                filled.append(True)
                loop = asyncio.get_running_loop()  # space comes back after the calls end
                loop.call_later(25, lambda: filler.unlink(missing_ok=True))
                fill()
        report, _ = asyncio.run(app.run_campaign(cfg, store, on_tick=on_tick))
        outcomes = [c["outcome"] for c in store.q("SELECT outcome FROM calls")]
        assert outcomes == ["message_played"] * 3
        assert report.paused  # the run said why it paused
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
