"""`ivr check` against the real sandbox Asterisk: it logs in over AMI and reports, one line each
naming the node, what the PBX would refuse (ivr/telephony/pbx_probe.py).

Before, `ivr check` never contacted the PBX and said "0 error(s)" whatever the PBX's state
(hunt-admin: an AMI user without the originate class, a missing include, IVR_AGI_URL on another
port). Run it under `flock /tmp/ivr-integ.lock`: it changes a global of the shared sandbox for a
moment (restored after).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ivr import app
from ivr.cli import cli
from ivr.config import Config
from ivr.telephony.ami import Ami

from .conftest import AGI_PORT, itest_config_dict

OURS = f"agi://127.0.0.1:{AGI_PORT}"  # what `ivr pbx up` wrote for the session's config


@pytest.fixture
def cfg_file(pbx_cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's campaign (sandbox mode, its built prompts) with its own store."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    data = itest_config_dict(tmp_path)
    data["prompts"]["build_dir"] = pbx_cfg.prompts.build_dir
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def check(cfg_file: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    return result.exit_code, result.output.splitlines()


async def set_global(cfg: Config, name: str, value: str | None) -> str:
    """Set a [globals] variable of the sandbox over AMI (None: only read it); its old value."""
    ami = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg), events=())
    await ami.connect()
    try:
        old = await ami.action({"Action": "Getvar", "Variable": name})
        if value is not None:
            done = await ami.action({"Action": "Setvar", "Variable": name, "Value": value})
            assert done.get("Response") == "Success", dict(done)
        return str(old.get("Value") or "")
    finally:
        ami.close()


@pytest.fixture
def agi_url_restored(pbx_cfg: Config) -> Iterator[None]:
    old = asyncio.run(set_global(pbx_cfg, "IVR_AGI_URL", None))
    assert old == OURS  # the session's `ivr pbx up`
    try:
        yield
    finally:
        asyncio.run(set_global(pbx_cfg, "IVR_AGI_URL", old))


def test_a_correct_sandbox_passes(cfg_file: Path) -> None:
    code, out = check(cfg_file)
    assert code == 0 and not [line for line in out if " pbx_" in line], out


def test_a_campaign_whose_opposition_key_is_not_the_lines_is_warned(cfg_file: Path) -> None:
    """The sandbox's [globals] IVR_OPTOUT_DIGIT is the session's flow.optout_key (9): a
    campaign teaching 8 is told its callers' 8 would not reach the line's failsafe journal."""
    data = yaml.safe_load(cfg_file.read_text())
    data["flow"]["optout_key"] = "8"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    _, out = check(cfg_file)  # an error too: the session's intro still says 9 (legal_mentions)
    assert [line for line in out if " pbx_" in line] == [
        "warning pbx_optout_digit: node pbx: [globals] IVR_OPTOUT_DIGIT is '9', not this "
        "campaign's flow.optout_key '8': a caller who presses 8 on the opposition line while "
        "no controller answers hears the legal mentions and is not put on the opposition "
        "list: run `ivr pbx up` with this config"], out


def test_an_agi_url_on_another_port_is_an_error_naming_both(
        cfg_file: Path, pbx_cfg: Config, agi_url_restored: None) -> None:
    """hunt-admin's third case: every opposition-line call failed, `ivr check` said 0 errors."""
    wrong = f"agi://127.0.0.1:{AGI_PORT + 1}"
    asyncio.run(set_global(pbx_cfg, "IVR_AGI_URL", wrong))
    code, out = check(cfg_file)
    assert code == 1 and (
        f"error pbx_agi_url: node pbx: [globals] IVR_AGI_URL is {wrong}, not this controller's "
        f"{OURS} (agi.host:agi.port): every opposition-line call would fail: run `ivr pbx up` "
        "with this config") in out, out


def test_an_ami_user_without_the_call_and_reporting_classes_is_an_error(
        cfg_file: Path) -> None:
    """The sandbox's second AMI user (write = originate, the same secret): Asterisk lists
    neither Hangup nor CoreShowChannels for it, and refuses it ShowDialPlan and Getvar."""
    data = yaml.safe_load(cfg_file.read_text())
    data["pbx"]["user"] = "ivr-monitor"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    code, out = check(cfg_file)
    pbx = [line for line in out if " pbx_" in line]
    assert code == 1 and pbx[0] == (
        "error pbx_ami_user: node pbx: AMI user 'ivr-monitor' lacks the call,reporting write "
        "class (Hangup, CoreShowChannels refused: calls cannot be settled): run `ivr pbx up` "
        "with this config"), out
    assert pbx[1].startswith("warning pbx_not_checked: node pbx: context ivr-outbound, "
                             "context ivr-callback, [globals] IVR_AGI_URL, [globals] "
                             "IVR_OPTOUT_DIGIT not checked: AMI user 'ivr-monitor' may not "
                             "ask"), out
    assert len(pbx) == 2, out
