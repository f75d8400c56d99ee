"""A callee who puts our call on hold after pressing 1 (call waiting on a mobile: a re-INVITE
a=sendonly) hears nothing while held: Asterisk 22 sends no RTP, and tells AMI Hold / Unhold.
SIPp plays the carrier (tests/integration/sipp/uas-hold-*.xml), as in test_sip_trunk.py.

Before: the message, the legal mentions and goodbye played into the held line and the call was
`message_played`, its proof saying both were heard, the contact done. Now: back in time, the
message plays again and the call is `message_played`; held for good, it is `error`, retried.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ivr.callflow import flow
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import place_calls
from .test_sip_trunk import DIAL_SIP, Carrier, cfg_for, sip_number, trunk_up  # noqa: F401 (fixture)

HOLD_WAIT_S = 4.0  # the wait for the Unhold here (HOLD_WAIT_S in a campaign)


def hold_call(trunk: Config, scenario: str, workdir: Path, n: int,
              monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One SIPp callee pressing 1 then holding the line as `scenario` says: its attempt and
    proof rows, once SIPp ended its scenario as written."""
    monkeypatch.setattr(flow, "HOLD_WAIT_S", HOLD_WAIT_S, raising=False)  # none before the fix
    store = Store.memory()
    with Carrier(scenario, 1, workdir, timeout_s=60) as carrier:
        rows = asyncio.run(place_calls(cfg_for(trunk, DIAL_SIP), store, [sip_number(n)],
                                       timeout=60))
        rc = carrier.wait()
    assert rc == 0, carrier.report()
    assert len(rows) == 1, rows
    return rows[0], store.q("SELECT kind, heard_sha256 FROM consents")


def test_a_call_held_for_good_after_1_is_an_error_retried(
        trunk_up: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row, proofs = hold_call(trunk_up, "uas-hold-after-1", tmp_path, 40, monkeypatch)
    assert (row["outcome"], row["stage"], row["keys"]) == ("error", "held-message", "1")
    assert row["retry_at"] is not None
    for proof in proofs:  # the key's record never says the message was heard
        assert not {"message", "legal"} & set(json.loads(proof["heard_sha256"] or "{}"))


def test_a_call_held_then_back_hears_the_message_again(
        trunk_up: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row, proofs = hold_call(trunk_up, "uas-hold-unhold", tmp_path, 41, monkeypatch)
    assert (row["outcome"], row["keys"]) == ("message_played", "1")
    assert [p["kind"] for p in proofs] == ["consent"]
    assert {"message", "legal"} <= set(json.loads(proofs[0]["heard_sha256"]))
