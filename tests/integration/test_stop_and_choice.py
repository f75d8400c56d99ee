"""Issue 17 through the real `ivr run` on the sandbox: two runs on one store, SIGTERM with calls
in flight, a second Ctrl-C while the PBX is down, and a PBX restart after each choice.
Tests that stop the PBX bring it back up before they end."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import app
from ivr.config import Config
from ivr.telephony.ami import Ami
from ivr.telephony.sandbox import MONITOR_EVENTS, Sandbox

from .conftest import AGI_PORT, fiction, itest_config_dict


def write_cfg(pbx_cfg: Config, base: Path, agi_port: int = AGI_PORT, **over: Any) -> Path:
    data = itest_config_dict(base, **over)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir  # built and installed already
    data["agi"]["port"] = agi_port
    base.mkdir(parents=True, exist_ok=True)
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def ivr(cfg_file: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ivr", "--config", str(cfg_file), *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def start_run(cfg_file: Path) -> subprocess.Popen:
    return subprocess.Popen(["ivr", "--config", str(cfg_file), "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def import_numbers(cfg_file: Path, numbers: list[str]) -> None:
    lst = cfg_file.parent / "list.csv"
    lst.write_text("number\n" + "".join(f"{n}\n" for n in numbers))
    out = ivr(cfg_file, "contacts", "import", str(lst), "--source", "s", "--basis", "consent")
    assert out.returncode == 0, out.stderr


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    try:
        conn = sqlite3.connect(db)
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]
    except sqlite3.Error:  # not created yet
        return []


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def answered(db: Path) -> int:
    return len(query(db, "SELECT id FROM calls WHERE answered_at IS NOT NULL"))


def restart_pbx(pbx_cfg: Config) -> None:
    sandbox = Sandbox(pbx_cfg)
    sandbox.down()
    sandbox.up(sim_timing=app.sandbox_sim_timing(pbx_cfg))


# -- two runs on one store ----------------------------------------------------------------------
def test_a_second_run_on_the_same_store_is_refused_naming_the_first(
        pbx_cfg: Config, tmp_path: Path) -> None:
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__max_concurrent=3)
    other = write_cfg(pbx_cfg, tmp_path / "other", agi_port=AGI_PORT + 1,
                      store__path=str(tmp_path / "itest.db"))  # same store, as in the issue
    # no key: the flow's full length; 3 at max_concurrent 3, one wave (5 took a second wave
    # of the full flow, nothing else)
    numbers = [fiction("30", block=f"6{i}") for i in range(3)]
    import_numbers(cfg_file, numbers)
    db = tmp_path / "itest.db"
    assert str(db) in other.read_text()
    first = start_run(cfg_file)
    try:
        wait_for(lambda: answered(db) >= 2, 40, "calls in flight")
        second = ivr(other, "run")
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()  # preflight warnings, then the one error
        errors = [x for x in lines if x.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], lines
        line = errors[0]
        assert line.startswith(f"error: the store {db} is in use by ivr run pid {first.pid} "
                               f"on host {socket.gethostname()} since 20"), line
        assert line.endswith("wait for it to end or stop it (Ctrl-C)"), line
        out, err = first.communicate(timeout=180)  # the first ends by itself
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    calls = query(db, "SELECT * FROM calls")
    assert len(calls) == 3 and all(c["outcome"] == "no_input" for c in calls), calls
    assert {c["status"] for c in query(db, "SELECT status FROM contacts")} == {"done"}


# -- SIGTERM --------------------------------------------------------------------------------------
def test_sigterm_lets_the_calls_in_flight_finish(pbx_cfg: Config, tmp_path: Path) -> None:
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__max_concurrent=3)
    import_numbers(cfg_file, [fiction("30", block=f"7{i}") for i in range(6)])
    db = tmp_path / "itest.db"
    proc = start_run(cfg_file)
    try:
        wait_for(lambda: answered(db) >= 3, 40, "3 calls in flight")
        proc.send_signal(signal.SIGTERM)  # as systemd or `docker stop` would
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "run operator: 3 call(s) placed" in out, out
    calls = query(db, "SELECT * FROM calls")
    assert [c["outcome"] for c in calls] == ["no_input"] * 3  # finished, not cut
    pending = query(db, "SELECT id FROM contacts WHERE status = 'pending'")
    assert len(pending) == 3  # never called: no new call after SIGTERM


# -- a second Ctrl-C while the PBX is down -------------------------------------------------------
def test_a_second_ctrl_c_while_the_pbx_is_down_ends_the_run_within_seconds(
        pbx_cfg: Config, tmp_path: Path) -> None:
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__max_concurrent=3)
    import_numbers(cfg_file, [fiction("30", block=f"8{i}") for i in range(6)])
    db = tmp_path / "itest.db"
    sandbox = Sandbox(pbx_cfg)
    proc = start_run(cfg_file)
    try:
        wait_for(lambda: answered(db) >= 3, 40, "3 calls in flight")
        pid = sandbox._pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the PBX hangs: AMI and FastAGI stop answering
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        sandbox.down()  # a PBX that was frozen mid-call: start it afresh
        sandbox.up(sim_timing=app.sandbox_sim_timing(pbx_cfg))
    assert elapsed < 10, (elapsed, err)
    assert proc.returncode != 0
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: stopped") and "reconciles" in line, err
    assert any(c["outcome"] is None for c in query(db, "SELECT * FROM calls"))
    # the next run reconciles what was left open; every call in one wave (the silent callees'
    # ~25 s each, three at a time, were this test's longest part)
    cfg_file = write_cfg(pbx_cfg, tmp_path, dialer__max_concurrent=6)
    again = ivr(cfg_file, "run", timeout=180)
    assert again.returncode == 0, again.stderr
    calls = query(db, "SELECT * FROM calls")
    assert all(c["outcome"] is not None for c in calls), calls
    assert any(c["stage"] == "reconciled" for c in calls)


# -- a PBX restart after the choice --------------------------------------------------------------
async def key_seen(pbx_cfg: Config, key: str) -> None:
    """Returns once a callee pressed `key` on one of the IVR's channels (monitor user)."""
    ami = Ami(pbx_cfg.pbx.host, pbx_cfg.pbx.port, Sandbox(pbx_cfg).monitor_user,
              app.ami_secret(pbx_cfg), events=MONITOR_EVENTS)
    await ami.connect()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ev = await ami.next_event(1.0)
            if ev is not None and ev.get("Event") == "DTMFEnd" and ev.get("Digit") == key \
                    and str(ev.get("Uniqueid", "")).startswith("ivr-"):
                return
        raise AssertionError(f"no key {key} seen")
    finally:
        ami.close()


async def restart_after_key(pbx_cfg: Config, key: str, after_s: float) -> float:
    """Watch the callees' DTMF (monitor user); `after_s` after `key`, restart the PBX. Returns
    when the key was seen (monotonic)."""
    await key_seen(pbx_cfg, key)
    seen = time.monotonic()
    await asyncio.sleep(after_s)
    await asyncio.get_running_loop().run_in_executor(None, restart_pbx, pbx_cfg)
    return seen


@pytest.mark.parametrize("suffix,key,prompt,outcome,status,choice", [
    ("20", "2", "legal", "declined_partial", "done", "refusal"),
    ("60", "9", "optout_confirm", "opted_out", "opted_out", "optout"),
    ("10", "1", "message", "error", "pending", "consent"),
])
def test_a_pbx_restart_after_the_choice(pbx_cfg: Config, tmp_path: Path, suffix: str, key: str,
                                        prompt: str, outcome: str, status: str,
                                        choice: str) -> None:
    duration = app.sandbox_sim_timing(pbx_cfg)[prompt]
    assert duration >= 1.0  # room to cut it
    cfg_file = write_cfg(pbx_cfg, tmp_path)
    number = fiction(suffix, block="90")
    import_numbers(cfg_file, [number])
    db = tmp_path / "itest.db"

    async def scenario() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "ivr", "--config", str(cfg_file), "run", env=dict(os.environ),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await restart_after_key(pbx_cfg, key, min(0.4, duration / 3))
            _, err = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
        return proc.returncode or 0, err.decode()
    code, err = asyncio.run(scenario())
    assert code == 0, err
    calls = query(db, "SELECT * FROM calls ORDER BY id")
    (person,) = query(db, "SELECT * FROM contacts")
    call = calls[0]
    assert (call["outcome"], call["stage"]) == (outcome, f"pbx-{prompt}"), calls
    assert call["hangup_cause"] == "0"  # the PBX's cut
    kinds = [c["kind"] for c in query(db, "SELECT kind FROM consents ORDER BY id")]
    if outcome == "error":  # the person asked for the message: called again, and heard it
        assert call["retry_at"] is not None
        assert [c["outcome"] for c in calls[1:]] == ["message_played"], calls
        assert person["status"] == "done" and kinds == [choice, choice]
    else:  # the choice is kept: never called again
        assert len(calls) == 1 and call["retry_at"] is None
        assert person["status"] == status and kinds == [choice]
