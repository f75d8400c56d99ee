"""campaign.caller_name, the display name of the caller ID: `ivr check` and `ivr run` apply the
same rule. An apostrophe or a comma ("Liste d'union pour Villeneuve") passes both; what breaks
the AMI field or the quoted name (", <, >, backslash, control characters, CR/LF) is refused by
both with one line naming the key. Before, the check let everything through and the run refused
apostrophes and commas at its start."""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import config
from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import safe_caller_name
from ivr.compliance.preflight import ERROR, preflight
from ivr.errors import ConfigError
from ivr.prompts.build import build_prompts
from ivr.telephony.fake_pbx import failed

import test_dialer
from test_cli_commands import invoke
from test_dialer import fiction, rig

KEPT = ["Liste d'union pour Villeneuve", "Ensemble, pour Saint-Étienne 2026"]
REFUSED = ['Liste "union"', "Liste\nunion", "Liste\runion", "Liste <union>", "Liste \\ union",
           "Liste\tunion"]
SHIPPED = {"name": "demo", "caller_id": "+33199000000", "caller_name": "x"}


def named(name: str) -> config.Config:
    return config.from_dict({"campaign": {**SHIPPED, "caller_name": name},
                             "schedule": {"demo_any_hour": True}}, Path("."))


def name_errors(cfg: config.Config) -> list[str]:
    return [v.message for v in preflight(cfg)
            if v.severity == ERROR and "caller_name" in v.message]


@pytest.mark.parametrize("name", KEPT)
def test_the_check_accepts_an_apostrophe_or_a_comma(name: str) -> None:
    assert name_errors(named(name)) == []


@pytest.mark.parametrize("name", REFUSED)
def test_the_check_refuses_what_breaks_the_caller_id_in_one_line(name: str) -> None:
    (message,) = name_errors(named(name))
    assert message.startswith("campaign.caller_name ") and "\n" not in message
    assert "\r" not in message and "remove it" in message


@pytest.mark.parametrize("name", ["Anonymous", "Numéro masqué", "Appel privé", "06 12 34 56 78",
                                  "+33612345678"])
def test_the_check_refuses_a_name_that_hides_the_caller(name: str) -> None:
    """Found with SIPp: these went into From and P-Asserted-Identity as the display name; the
    same words or a number are refused as campaign.caller_id (caller_id_masked, _mobile)."""
    (message,) = name_errors(named(name))
    assert message.startswith("campaign.caller_name ") and "\n" not in message
    assert "hidden caller" in message or "phone number" in message
    with pytest.raises(ConfigError, match="campaign.caller_name"):
        safe_caller_name(name)  # the run applies the same rule


def write_name(cfg_file: Path, name: str) -> None:
    data = yaml.safe_load(cfg_file.read_text())
    data["campaign"]["caller_name"] = name
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))


@pytest.mark.parametrize("name", [KEPT[0], REFUSED[0], REFUSED[1]])
def test_ivr_check_and_ivr_run_agree(cfg_file: Path, name: str) -> None:
    """`ivr check` and `ivr run`'s preflight (a dry run: no PBX) on the shipped config."""
    write_name(cfg_file, name)
    if name in KEPT:  # a check that passes is one whose prompts are built, as `ivr run` needs
        build_prompts(config.load(cfg_file))
    check_code, check_out = invoke(cfg_file, "check")
    run_code, run_out = invoke(cfg_file, "run", "--dry-run")
    if name in KEPT:
        assert (check_code, run_code) == (0, 0), (check_out, run_out)
        assert "caller_name" not in check_out + run_out
        return
    assert check_code == 1 and "caller_name_unsafe: campaign.caller_name" in check_out
    errors = [line for line in run_out.splitlines() if not line.startswith("warning ")]
    assert run_code == 1 and len(errors) == 1  # the shipped demo config's warning aside
    assert errors[0].startswith("error: campaign.caller_name")


def renamed(name: str) -> Any:
    """test_dialer.make_cfg with this caller name."""
    make = test_dialer.make_cfg

    def cfg(*args: Any, **kw: Any) -> config.Config:
        c = make(*args, **kw)
        return dataclasses.replace(c, campaign=dataclasses.replace(c.campaign, caller_name=name))
    return cfg


@pytest.mark.parametrize("name", KEPT)
def test_a_run_starts_and_presents_the_name_with_its_apostrophe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The run's start (app.start: the dialer) on the fake PBX, and the Originate's CallerID."""
    monkeypatch.setattr(test_dialer, "make_cfg", renamed(name))

    async def scenario() -> str:
        async with rig(tmp_path, {fiction(1): failed(1)}, clock=ManualClock()) as r:
            await r.dialer.dial(test_dialer.contact(r.store, fiction(1)))
            return str(r.pbx.originates[0]["CallerID"])
    assert asyncio.run(scenario()) == f'"{name}" <+33199000000>'


@pytest.mark.parametrize("name", REFUSED)
def test_a_run_refuses_at_its_start_what_the_check_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(test_dialer, "make_cfg", renamed(name))

    async def scenario() -> None:
        async with rig(tmp_path, {fiction(1): failed(1)}, clock=ManualClock()):
            pass
    with pytest.raises(ConfigError) as err:
        asyncio.run(scenario())
    message = str(err.value)
    assert message.startswith("campaign.caller_name ") and "\n" not in message
    assert (message,) == tuple(name_errors(named(name)))  # the check's very words


def test_a_name_longer_than_64_bytes_is_refused_by_the_check_and_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asterisk copies the Originate's CallerID into a 255-byte buffer: a long name cut the
    presented number (or made every Originate refused). 64 UTF-8 bytes pass; one more is one
    line naming the key and the limit, from `ivr check` and at the run's start alike."""
    at_limit = "É" * 32  # 64 bytes in UTF-8
    assert name_errors(named(at_limit)) == []
    (message,) = name_errors(named(at_limit + "x"))
    assert message.startswith("campaign.caller_name ") and "\n" not in message
    assert "65 bytes" in message and "at most 64" in message
    monkeypatch.setattr(test_dialer, "make_cfg", renamed("x" * 300))

    async def scenario() -> None:
        async with rig(tmp_path, {fiction(1): failed(1)}, clock=ManualClock()):
            pass
    with pytest.raises(ConfigError, match="caller_name is 300 bytes"):
        asyncio.run(scenario())
