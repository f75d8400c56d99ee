"""Issue 2: the sandbox is real. Each simulated callee, seen from AMI with no controller logic:
Originate Local/<number>@ivr-sim into a side that speaks then waits (ivr-sim-speaker), then
what Asterisk reports."""
from __future__ import annotations

import asyncio
import subprocess
import time
import wave
from typing import Any

import pytest

from ivr import app
from ivr.prompts.install import install_prompts_to_pbx
from ivr.telephony.ami import Ami
from ivr.config import Config
from ivr.telephony.contract import SIM_SOUNDS_DIR, SIM_SPEAKER_CONTEXT, SIM_VAR_SPEAKER_WAIT
from ivr.telephony.sandbox import MONITOR_EVENTS, Sandbox

from .conftest import fiction

ROWS = ["10", "11", "20", "30", "40", "50", "51", "52", "60", "70", "71", "72", "80", "99"]


# The calling side speaks (the sandbox's machine greeting), as an introduction would: a callee
# acts once it hears one. Then it waits: WAIT_S in all, as Wait(25) did before callees listened.
WAIT_S = 25


def _spoken_s(cfg: Config) -> float:
    path = Sandbox(cfg).sounds / SIM_SOUNDS_DIR / "machine-greeting.wav"
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def _observe(cfg: Config, wait_s: int = WAIT_S) -> dict[str, dict[str, Any]]:
    # The controller's user never receives DTMF events: a sandbox monitor user does.
    ami = Ami(cfg.pbx.host, cfg.pbx.port, Sandbox(cfg).monitor_user, app.ami_secret(cfg),
              events=MONITOR_EVENTS)
    await ami.connect()
    seen: dict[str, dict[str, Any]] = {
        s: {"dtmf": [], "hangup": {}, "response": None, "t0": 0.0} for s in ROWS}
    uid = {f"sim-{s}": s for s in ROWS}
    hold_s = wait_s - _spoken_s(cfg)
    try:
        for s in ROWS:
            seen[s]["t0"] = time.monotonic()
            await ami.action({"Action": "Originate", "Channel": f"Local/{fiction(s)}@ivr-sim",
                              "Context": SIM_SPEAKER_CONTEXT, "Exten": "s", "Priority": "1",
                              "Variable": f"{SIM_VAR_SPEAKER_WAIT}={hold_s:.2f}",
                              "Async": "true", "ChannelId": f"sim-{s}",
                              "OtherChannelId": f"sim-{s}-2", "Timeout": "5000"})
        open_rows = set(ROWS)
        deadline = time.monotonic() + wait_s + 15
        while open_rows and time.monotonic() < deadline:
            ev = await ami.next_event(1.0)
            if ev is None:
                continue
            u = ev.get("Uniqueid", "")
            row = uid.get(u) or uid.get(u[:-2] if u.endswith("-2") else "")
            if row is None:
                continue
            at = round(time.monotonic() - seen[row]["t0"], 2)
            if ev.get("Event") == "OriginateResponse":
                seen[row]["response"] = (ev.get("Response"), int(ev.get("Reason")), at)
            elif ev.get("Event") == "DTMFEnd" and u == f"sim-{row}":
                seen[row]["dtmf"].append((ev.get("Digit"), at))
            elif ev.get("Event") == "Hangup":
                half = ";2" if u.endswith("-2") else ";1"
                seen[row]["hangup"][half] = (int(ev.get("Cause")), at)
                if half == ";1":
                    open_rows.discard(row)
    finally:
        ami.close()
    return seen


@pytest.fixture(scope="module")
def observed(pbx_cfg: Config) -> dict[str, dict[str, Any]]:
    return asyncio.run(_observe(pbx_cfg))


def digits(obs: dict[str, Any]) -> str:
    return "".join(d for d, _ in obs["dtmf"])


@pytest.mark.parametrize("row,keys", [("10", "1"), ("11", "1"), ("20", "2"), ("40", "71"),
                                      ("51", "1"), ("52", "2"), ("60", "9"), ("99", "1"),
                                      ("30", ""), ("50", ""), ("80", "")])
def test_answering_callees_answer_and_press_their_keys(observed: dict, row: str,
                                                       keys: str) -> None:
    obs = observed[row]
    assert obs["response"][:2] == ("Success", 4)
    assert digits(obs) == keys


def test_key_during_intro_comes_before_key_after_intro(observed: dict,
                                                        pbx_cfg: Config) -> None:
    intro_s = app.sandbox_sim_timing(pbx_cfg)["intro"]
    early = observed["10"]["dtmf"][0][1]
    late = observed["11"]["dtmf"][0][1]
    assert early < intro_s
    assert late > intro_s + 1.0


@pytest.mark.parametrize("row", ["50", "51", "52"])
def test_callees_that_hang_up_do_so_themselves(observed: dict, row: str) -> None:
    cause, at = observed[row]["hangup"][";2"]
    assert cause == 16 and at < 20  # before our side hangs up at WAIT_S


def test_busy(observed: dict) -> None:
    assert observed["70"]["response"][:2] == ("Failure", 5)
    assert observed["70"]["hangup"][";2"][0] == 17


def test_never_answers_times_out(observed: dict) -> None:
    response, reason, at = observed["71"]["response"]
    assert (response, reason) == ("Failure", 3)
    assert 4.5 <= at <= 8


def test_congestion(observed: dict) -> None:
    assert observed["72"]["response"][:2] == ("Failure", 8)
    assert observed["72"]["hangup"][";2"][0] == 34


def test_silent_callee_stays_on_the_line(observed: dict) -> None:
    assert observed["30"]["hangup"][";1"][1] >= 24  # only our side, at WAIT_S, ended it


def test_pbx_cli_reaches_the_sandbox(pbx_cfg: Config) -> None:
    out = Sandbox(pbx_cfg).cli("dialplan show ivr-outbound")
    assert "AGI(${IVR_AGI}/ivr,${CALL_ID},${AMDSTATUS},${IVR_TOKEN})" in out
    assert "Set(AGISIGHUP=no)" in out


def test_manager_conf_is_loopback_and_least_privilege(pbx_cfg: Config) -> None:
    text = (Sandbox(pbx_cfg).etc / "manager.conf").read_text()
    assert "bindaddr = 127.0.0.1" in text
    assert "deny = 0.0.0.0/0.0.0.0" in text and "permit = 127.0.0.1/255.255.255.255" in text
    write = next(l for l in text.splitlines() if l.startswith("write"))
    assert "system" not in write and "command" not in write and "config" not in write
    assert oct((Sandbox(pbx_cfg).etc / "manager.conf").stat().st_mode & 0o777) == "0o600"


def test_cli_up_status_down_twice(pbx_cfg: Config) -> None:
    """`ivr pbx up && ivr pbx status && ivr pbx down`, twice, through the real command."""
    import os
    cfg_file = pbx_cfg.base_dir / "cli.yaml"
    cfg_file.write_text(f"pbx:\n  sandbox_dir: {pbx_cfg.pbx.sandbox_dir}\n"
                        f"prompts:\n  build_dir: {pbx_cfg.prompts.build_dir}\n")
    env = dict(os.environ)
    try:
        for _ in range(2):
            for cmd, code in (("up", 0), ("status", 0), ("down", 0), ("status", 3)):
                proc = subprocess.run(["ivr", "--config", str(cfg_file), "pbx", cmd],
                                      capture_output=True, text=True, env=env, timeout=120)
                assert proc.returncode == code, (cmd, proc.stdout, proc.stderr)
    finally:  # leave the sandbox as the session fixture made it
        Sandbox(pbx_cfg).up(sim_timing=app.sandbox_sim_timing(pbx_cfg))
        install_prompts_to_pbx(pbx_cfg)


def test_a_callee_presses_nothing_before_it_hears_the_introduction(pbx_cfg: Config) -> None:
    """Its delays count from the introduction's first words, not from the answer: facing a
    silent line (an IVR slow to start, 1,000 calls at once), callee 10 waits instead of pressing
    into the gap before the first prompt, where Asterisk drops the key (CI: 32-117 of 1,000
    calls `no_input` in test_load)."""
    async def watch() -> tuple[str | None, list[str], float]:
        ami = Ami(pbx_cfg.pbx.host, pbx_cfg.pbx.port, Sandbox(pbx_cfg).monitor_user,
                  app.ami_secret(pbx_cfg), events=MONITOR_EVENTS)
        await ami.connect()
        response, keys, ended = None, [], 0.0
        t0 = time.monotonic()
        try:
            await ami.action({"Action": "Originate", "Async": "true", "Timeout": "5000",
                              "Channel": f"Local/{fiction('10', block='77')}@ivr-sim",
                              "Application": "Wait", "Data": "8", "ChannelId": "deaf-1"})
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ev = await ami.next_event(1.0)
                if ev is None or not str(ev.get("Uniqueid", "")).startswith("deaf-1"):
                    continue
                if ev.get("Event") == "OriginateResponse":
                    response = ev.get("Response")
                elif ev.get("Event") == "DTMFEnd":
                    keys.append(ev.get("Digit", ""))
                elif ev.get("Event") == "Hangup" and ev.get("Uniqueid") == "deaf-1":
                    ended = time.monotonic() - t0
                    break
        finally:
            ami.close()
        return response, keys, ended
    response, keys, ended = asyncio.run(watch())
    assert (response, keys) == ("Success", [])  # answered, then silence: no key
    assert ended >= 8  # the callee stayed on the line to the end of our Wait(8)
