"""Issue 16 item 11: the first seconds of a call over the PJSIP trunk, SIPp as the carrier.

- With the shipped default (dialer.amd off), a key pressed half a second after the answer
  reaches the flow: the intro (GET OPTION) starts at once with the keys live.
- calls.answered_at is the answer (OriginateResponse), not the AGI's start: with AMD on, a
  silent callee keeps AMD listening its whole analysis time (5 s here) before the AGI, yet
  answered_at - started_at stays the ring time (SIPp answers at once; tolerance 1.0 s).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


from ivr import config
from ivr.config import Config
from ivr.store.sqlite import Store, parse_utc

from .conftest import fiction, itest_config_dict, place_calls
from .test_sip_trunk import AGI_PORT, DIAL_SIP, Carrier, trunk_up  # noqa: F401 (fixture)

ANSWER_TOLERANCE_S = 1.0  # SIPp sends 180 then 200 at once; AMD alone would add ~5 s


def sip_cfg(base: Path, amd: bool | None) -> Config:
    data = itest_config_dict(base, agi__port=AGI_PORT, dialer__dial_string=DIAL_SIP)
    if amd is None:  # the shipped default, whatever conftest sets for the Local callees
        del data["dialer"]["amd"]
    else:
        data["dialer"]["amd"] = amd
    return config.from_dict(data, base)


def one_call(cfg: Config, scenario: str, number: str, workdir: Path) -> tuple[dict[str, Any],
                                                                           Store, int, str]:
    store = Store.memory()
    with Carrier(scenario, 1, workdir, timeout_s=90) as carrier:
        rows = asyncio.run(place_calls(cfg, store, [number], timeout=90))
        rc = carrier.wait()
    assert len(rows) == 1, rows
    return rows[0], store, rc, carrier.report()


def test_amd_is_off_by_default() -> None:
    assert config.Dialer().amd is False


def test_a_key_half_a_second_after_the_answer_is_not_lost(
        trunk_up: Config, tmp_path: Path) -> None:  # noqa: F811
    cfg = sip_cfg(trunk_up.base_dir, amd=None)
    assert cfg.dialer.amd is False
    row, _, rc, log = one_call(cfg, "uas-press1-early", fiction("00", block="93"), tmp_path)
    assert rc == 0, log
    assert (row["outcome"], row["keys"]) == ("message_played", "1"), log


def test_answered_at_is_the_answer_not_the_end_of_amd(trunk_up: Config,  # noqa: F811
                                                      tmp_path: Path) -> None:
    cfg = sip_cfg(trunk_up.base_dir, amd=True)
    row, _, rc, log = one_call(cfg, "uas-silent", fiction("01", block="93"), tmp_path)
    assert rc == 0, log
    assert row["outcome"] == "no_input" and row["amd_status"] == "NOTSURE", row
    rang = (parse_utc(row["answered_at"]) - parse_utc(row["started_at"])).total_seconds()
    assert 0 <= rang <= ANSWER_TOLERANCE_S, row
