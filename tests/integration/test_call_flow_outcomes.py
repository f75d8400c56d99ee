"""Issue 4: every simulated callee placed through the FastAGI flow gives the expected calls row."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import fiction, place_calls

EXPECTED = {
    "10": ("message_played", "1"),
    "11": ("message_played", "1"),
    "20": ("declined", "2"),
    "30": ("no_input", ""),
    "40": ("message_played", "71"),
    "50": ("hangup_intro", ""),
    "51": ("message_partial", "1"),
    "52": ("declined_partial", "2"),
    "60": ("opted_out", "9"),
    "70": ("busy", ""),
    "71": ("no_answer", ""),
    "72": ("congestion", ""),
    "80": ("machine", ""),
    "99": ("message_played", "1"),
}


@pytest.fixture(scope="module")
def placed(pbx_cfg: Config) -> tuple[Store, dict[str, dict[str, Any]]]:
    store = Store.memory()
    rows = asyncio.run(place_calls(pbx_cfg, store, [fiction(s) for s in EXPECTED]))
    return store, {r["number"][-2:]: r for r in rows}


@pytest.mark.parametrize("row", sorted(EXPECTED))
def test_outcome_and_keys(placed: tuple[Store, dict], row: str) -> None:
    _, calls = placed
    outcome, keys = EXPECTED[row]
    assert (calls[row]["outcome"], calls[row]["keys"]) == (outcome, keys)


def test_one_row_per_attempt_with_timestamps(placed: tuple[Store, dict]) -> None:
    store, calls = placed
    assert len(store.q("SELECT * FROM calls")) == len(EXPECTED)
    for row, call in calls.items():
        assert call["attempt"] == 1 and call["channel_id"] and call["started_at"].endswith("Z")
        assert call["ended_at"] and call["ended_at"] >= call["started_at"]
        answered = EXPECTED[row][0] not in ("busy", "no_answer", "congestion")
        assert (call["answered_at"] is not None) == answered, row


def test_hangup_causes(placed: tuple[Store, dict]) -> None:
    _, calls = placed
    assert calls["70"]["hangup_cause"] == "17"
    assert calls["71"]["hangup_cause"] == "19"
    assert calls["72"]["hangup_cause"] == "34"
    assert calls["10"]["hangup_cause"] == "16"


def test_prompts_heard_are_fingerprinted(placed: tuple[Store, dict], pbx_cfg: Config) -> None:
    _, calls = placed
    hashes = app.prompt_hashes(pbx_cfg)
    played = json.loads(calls["10"]["prompts_sha256"])
    assert played == {k: hashes[k] for k in ("message", "legal", "goodbye")}
    after = json.loads(calls["11"]["prompts_sha256"])
    assert after["intro"] == hashes["intro"]  # heard to the end before pressing 1
    partial = json.loads(calls["51"]["prompts_sha256"])
    assert "message" not in partial  # hung up during it
    assert json.loads(calls["80"]["prompts_sha256"]) == {}  # a machine hears nothing


def test_stage_reached_is_recorded(placed: tuple[Store, dict]) -> None:
    _, calls = placed
    assert calls["50"]["stage"] == "intro"
    assert calls["51"]["stage"] == "message"
    assert calls["52"]["stage"] == "legal"


def test_optout_key_puts_the_number_on_the_opposition_list(placed: tuple[Store, dict]) -> None:
    store, calls = placed
    assert store.is_opted_out(fiction("60"))
    optout = store.one("SELECT * FROM optouts WHERE number = ?", (fiction("60"),))
    assert optout["via"] == "phone-key" and optout["campaign"] == "itest"
    assert not store.is_opted_out(fiction("20"))


def test_proof_of_consent_for_yes_no_and_optout(placed: tuple[Store, dict],
                                                pbx_cfg: Config) -> None:
    store, _ = placed
    intro = app.prompt_hashes(pbx_cfg)["intro"]
    kinds = {r["number"][-2:]: r for r in store.q("SELECT * FROM consents")}
    assert kinds["10"]["kind"] == "consent" and kinds["10"]["key"] == "1"
    assert kinds["20"]["kind"] == "refusal" and kinds["20"]["key"] == "2"
    assert kinds["60"]["kind"] == "optout" and kinds["60"]["key"] == "9"
    for row in ("10", "20"):
        assert kinds[row]["prompt_sha256"] == intro
        assert kinds[row]["caller_id"] == "+33199000000" and kinds[row]["campaign"] == "itest"


def test_amd_status_is_recorded(placed: tuple[Store, dict]) -> None:
    _, calls = placed
    assert calls["80"]["amd_status"] == "MACHINE"
    assert calls["10"]["amd_status"] in ("HUMAN", "NOTSURE")


def test_machine_configured_to_hear_the_legal_mentions_only(pbx_cfg: Config) -> None:
    import dataclasses
    cfg = dataclasses.replace(pbx_cfg, dialer=dataclasses.replace(pbx_cfg.dialer,
                                                                  on_machine="legal"))
    store = Store.memory()
    (call,) = asyncio.run(place_calls(cfg, store, [fiction("80", block="81")]))
    heard = json.loads(call["prompts_sha256"])
    assert call["outcome"] == "machine"
    assert list(heard) == ["legal"] and "message" not in heard
