"""Issue 5.7: whole runs on the sandbox: outcomes and statuses, retries, opt-out mid-run, pacing,
and a second run that calls nobody."""
from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import pytest

from ivr import app
from ivr.campaign.run import RunReport
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import add_contacts, fiction, now

EXPECTED = {  # last two digits -> (outcome of the last attempt, contact status, attempts)
    "10": ("message_played", "done", 1), "11": ("message_played", "done", 1),
    "20": ("declined", "done", 1), "30": ("no_input", "done", 1),
    "40": ("message_played", "done", 1), "50": ("hangup_intro", "done", 1),
    "51": ("message_partial", "done", 1), "52": ("declined_partial", "done", 1),
    "60": ("opted_out", "opted_out", 1), "70": ("busy", "exhausted", 2),
    "71": ("no_answer", "exhausted", 2), "72": ("congestion", "exhausted", 2),
    "80": ("machine", "done", 1), "99": ("message_played", "done", 1),
}


def run(cfg: Config, store: Store, on_tick: Any = lambda ctl: None) -> RunReport:
    report, _ = asyncio.run(app.run_campaign(cfg, store, on_tick=on_tick))
    return report


@pytest.fixture(scope="module")
def full_run(pbx_cfg: Config) -> tuple[Store, RunReport, RunReport]:
    store = Store.memory()
    add_contacts(store, [fiction(s) for s in EXPECTED])
    first = run(pbx_cfg, store)
    second = run(pbx_cfg, store)
    return store, first, second


@pytest.mark.parametrize("row", sorted(EXPECTED))
def test_every_contact_ends_with_its_outcome_and_status(full_run: tuple, row: str) -> None:
    store, _, _ = full_run
    outcome, status, attempts = EXPECTED[row]
    calls = store.q("SELECT * FROM calls WHERE number = ? ORDER BY attempt", (fiction(row),))
    contact = store.one("SELECT status FROM contacts WHERE number = ?", (fiction(row),))
    assert [c["attempt"] for c in calls] == list(range(1, attempts + 1))
    assert calls[-1]["outcome"] == outcome
    assert contact["status"] == status


def test_retries_stop_at_max_attempts_and_every_attempt_has_one_outcome(full_run: tuple,
                                                                         pbx_cfg: Config) -> None:
    store, first, _ = full_run
    assert pbx_cfg.retry.max_attempts == 2
    busy = store.q("SELECT outcome, retry_at FROM calls WHERE number = ?", (fiction("70"),))
    assert [b["outcome"] for b in busy] == ["busy", "busy"]
    assert busy[0]["retry_at"] is not None and busy[-1]["retry_at"] is None
    assert store.open_calls() == []
    assert first.originated == sum(a for _, _, a in EXPECTED.values())


def test_second_run_calls_nobody_and_says_why(full_run: tuple) -> None:
    store, _, second = full_run
    assert second.originated == 0
    assert second.why.startswith("all done")
    assert len(store.q("SELECT id FROM calls")) == sum(a for _, _, a in EXPECTED.values())


def test_number_opted_out_mid_run_is_not_dialled_again(pbx_cfg: Config) -> None:
    cfg = dataclasses.replace(pbx_cfg, retry=dataclasses.replace(
        pbx_cfg.retry, max_attempts=3,
        delay_s=dataclasses.replace(pbx_cfg.retry.delay_s, busy=3)))
    store = Store.memory()
    number = fiction("70", block="01")
    add_contacts(store, [number])

    def on_tick(ctl: Any) -> None:  # as soon as the first busy is stored, the person objects
        if store.one("SELECT 1 AS x FROM calls WHERE outcome = 'busy'") and \
                not store.is_opted_out(number):
            store.add_optout(number, "post", now())
    report = run(cfg, store, on_tick)
    assert [c["outcome"] for c in store.q("SELECT outcome FROM calls")] == ["busy"]
    assert store.one("SELECT status FROM contacts")["status"] == "opted_out"
    assert report.originated == 1


def test_opted_out_before_the_run_is_never_dialled(pbx_cfg: Config) -> None:
    store = Store.memory()
    numbers = [fiction("10", block="02"), fiction("20", block="02")]
    add_contacts(store, numbers)
    store.add_optout(numbers[0], "email", now())
    report = run(pbx_cfg, store)
    assert [c["number"] for c in store.q("SELECT number FROM calls")] == [numbers[1]]
    assert report.originated == 1


def test_max_concurrent_is_respected(pbx_cfg: Config) -> None:
    cfg = dataclasses.replace(pbx_cfg, dialer=dataclasses.replace(
        pbx_cfg.dialer, max_concurrent=3, calls_per_second=20))
    store = Store.memory()
    add_contacts(store, [fiction("50", block=f"1{i}") for i in range(8)])
    peak: list[int] = []
    report = run(cfg, store, lambda ctl: peak.append(len(ctl.dialer.inflight)))
    assert report.originated == 8
    assert max(peak) == 3
    assert Counter(c["outcome"] for c in store.q("SELECT outcome FROM calls")) == \
        {"hangup_intro": 8}


def test_nothing_callable_says_why(pbx_cfg: Config) -> None:
    store = Store.memory()
    report = run(pbx_cfg, store)
    assert report.originated == 0 and "no contacts" in report.why
