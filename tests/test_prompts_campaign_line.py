"""The opposition line is one per PBX (dialplans/ivr-callback.conf plays sounds/ivr/<key>).

Found in review (2026-12-02):
- the plain copies sounds/ivr/<key>.wav were last-writer-wins across the campaigns sharing a
  PBX's sounds folder: building B made A's opposition line say B's candidate and B's address;
- without prompts.items.callback_notice, `ivr check` said 0 errors, and the line then recorded
  no opposition at all (the notice cannot play, so no caller can press 1).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import pytest

from conftest import make_config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.callflow.agi_callback import CallbackHandler
from ivr.compliance.campaign_check import prompt_violations
from ivr.config import Config
from ivr.prompts.build import build_prompts
from ivr.prompts.install import LINE_OWNER, line_owner
from ivr.telephony.contract import ARG_CALLBACK_SECRET
from ivr.telephony.fastagi import CHANNEL_UP, StreamResult
from test_agi_ivr import Channel, OptOuts
from test_prompts_campaign_build import campaign_cfg, items, legal


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def own_build(cfg: Config, tmp_path: Path, label: str) -> Config:
    """The campaign with its own build dir, on the shared PBX sounds folder."""
    return make_config(
        tmp_path, campaign={"name": cfg.campaign.name, "caller_id": "+33162000000"},
        legal={"sender": cfg.legal.sender, "postal_address": cfg.legal.postal_address,
               "email": cfg.legal.email},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": f"build-{label}",
                 "items": {k: {"text": v.text} for k, v in cfg.prompts.items.items()}},
        pbx={"mode": "external", "sounds_dir": str(tmp_path / "sounds")})


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Config, Config]:
    a = campaign_cfg(tmp_path, "a-municipales", "Marie Dupont", "3 place du Marché, Lyon")
    b = campaign_cfg(tmp_path, "b-legislatives", "Jean Martin", "12 rue Haute, Paris")
    return own_build(a, tmp_path, "a"), own_build(b, tmp_path, "b")


def test_another_campaign_leaves_the_lines_prompts_as_they_are(
        pair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = pair
    built_a, built_b = build_prompts(a)["prompts"], build_prompts(b)["prompts"]
    plain = tmp_path / "sounds" / "ivr"
    install_prompts_to_pbx(a)
    assert line_owner(tmp_path / "sounds") == "a-municipales"
    with caplog.at_level(logging.WARNING, logger="ivr.prompts.install"):
        installed = install_prompts_to_pbx(b)
    for key in ("legal", "callback_notice", "optout_confirm"):
        assert sha(plain / f"{key}.wav") == built_a[key]["sha256"], key
    (line,) = [r.getMessage() for r in caplog.records]
    assert "'b-legislatives'" in line and "'a-municipales'" in line
    assert LINE_OWNER in line and "\n" not in line
    # B's own versions are installed all the same: B's calls play them
    assert installed == tmp_path / "sounds"
    assert any(p.name.startswith("legal-" + built_b["legal"]["sha256"][:12])
               for p in plain.rglob("*.wav"))
    # told: the owner file deleted, B's install takes the line
    (plain / LINE_OWNER).unlink()
    install_prompts_to_pbx(b)
    assert sha(plain / "legal.wav") == built_b["legal"]["sha256"]
    assert line_owner(tmp_path / "sounds") == "b-legislatives"
    install_prompts_to_pbx(a)  # and A no longer overwrites them
    assert sha(plain / "legal.wav") == built_b["legal"]["sha256"]


def test_the_owner_updates_the_lines_prompts(pair, tmp_path: Path) -> None:
    a, _ = pair
    build_prompts(a)
    install_prompts_to_pbx(a)
    plain = tmp_path / "sounds" / "ivr" / "legal.wav"
    first = sha(plain)
    moved = make_config(
        tmp_path, campaign={"name": a.campaign.name, "caller_id": "+33162000000"},
        legal=legal("Marie Dupont", "4 place du Marché, Lyon"),
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build-a",
                 "items": items("Marie Dupont", "4 place du Marché, Lyon")},
        pbx={"mode": "external", "sounds_dir": str(tmp_path / "sounds")})
    rebuilt = build_prompts(moved)["prompts"]["legal"]["sha256"]
    install_prompts_to_pbx(moved)
    assert sha(plain) == rebuilt != first


def test_a_config_without_the_notice_fails_the_check(pair) -> None:
    a, _ = pair
    assert [v for v in prompt_violations(a) if v.code == "callback_line"] == []
    without = make_config(
        Path("."), campaign={"name": "x", "caller_id": "+33162000000"},
        legal=legal("Marie Dupont", "3 place du Marché, Lyon"),
        prompts={"items": {k: v for k, v in items("Marie Dupont", "3 place du Marché, Lyon")
                           .items() if k != "callback_notice"}})
    (v,) = [v for v in prompt_violations(without) if v.code == "callback_line"]
    assert v.is_error and "prompts.items.callback_notice" in v.message and "\n" not in v.message


def test_a_notice_that_does_not_ask_for_key_1_fails_the_check() -> None:
    wrong = make_config(
        Path("."), campaign={"name": "x", "caller_id": "+33162000000"},
        legal=legal("Marie Dupont", "3 place du Marché, Lyon"),
        prompts={"items": {**items("Marie Dupont", "3 place du Marché, Lyon"),
                           "callback_notice": {"text": "Pour ne plus être appelé, tapez 9."}}})
    (v,) = [v for v in prompt_violations(wrong) if v.code == "callback_line"]
    assert "key 1" in v.message and "prompts.items.callback_notice" in v.message


def test_the_line_says_so_when_its_notice_cannot_play(caplog: pytest.LogCaptureFixture) -> None:
    secret = "callback-secret-0123456789"
    store = OptOuts()
    handler = CallbackHandler(store, "FR", lambda: None, timeout_s=4,  # type: ignore[arg-type]
                              secret=secret)
    ch = Channel(StreamResult(failed=True), status=CHANNEL_UP,
                 headers={"agi_callerid": "0199000077", ARG_CALLBACK_SECRET: secret})
    with caplog.at_level(logging.ERROR, logger="ivr.callflow.agi_callback"):
        asyncio.run(handler(ch))
    assert store.added == []
    assert "callback_notice" in caplog.text and "prompts.items.callback_notice" in caplog.text
    caplog.clear()
    gone = Channel(StreamResult(failed=True), status=None,
                   headers={"agi_callerid": "0199000077", ARG_CALLBACK_SECRET: secret})
    asyncio.run(handler(gone))  # a caller who hung up is not an error
    assert caplog.text == ""
