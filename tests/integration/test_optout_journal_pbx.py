"""The failsafes' journal on the sandbox's Asterisk. With no controller serving the opposition
line, a caller who presses 1 is kept in AstDB by the dialplan's failsafe, and a controller puts
the number on the opposition list when it starts, and at once when it is already connected to
the PBX (its FastAGI down, as when `ivr serve` is not running). A callee who presses the
opposition key during the outbound failsafe's legal mentions hears that it is taken and is
opposed by the controller that placed the call; another key does not cut the legal mentions
short (they play again, and the opposition key still counts there)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ivr import app
from ivr.config import Config
from ivr.prompts.build import load_manifest
from ivr.store.sqlite import Store
from ivr.telephony.ami import Ami
from ivr.telephony.contract import (CALLBACK_CONTEXT, CALLBACK_EXTEN, EVENT_FAILSAFE,
                                    EVENT_JOURNALED, GLOBAL_OPTOUT_DIGIT, JOURNAL_FAMILY,
                                    SIM_CALLER_CONTEXT)
from ivr.telephony.sandbox import Sandbox

from .conftest import add_contacts, failsafe_times, fiction

BEFORE, DURING = "+33199000074", "+33199000073"


@pytest.fixture
def clean_journal(pbx_cfg: Config) -> Iterator[None]:
    """The sandbox's AstDB outlives a test: no journaled number reaches another test's store."""
    box = Sandbox(pbx_cfg)
    box.cli(f"database deltree {JOURNAL_FAMILY}")
    yield
    box.cli(f"database deltree {JOURNAL_FAMILY}")


async def _caller_presses_1(cfg: Config, caller_id: str, channel_id: str,
                            key: str = "1") -> list[str]:
    """A caller on the opposition line who presses 1 (`key`) two seconds in: the UserEvents
    the controller's AMI user saw until the caller's hangup."""
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    seen: list[str] = []
    try:
        await watch.action({"Action": "Originate", "Channel": f"Local/press{key}@{SIM_CALLER_CONTEXT}",
                            "Context": CALLBACK_CONTEXT, "Exten": CALLBACK_EXTEN,
                            "Priority": "1", "Async": "true", "Timeout": "5000",
                            "CallerID": caller_id, "ChannelId": channel_id})
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            ev = await watch.next_event(0.1)
            if ev is None:
                continue
            if ev.get("Event") == "UserEvent":
                seen.append(str(ev.get("UserEvent")))
            if ev.get("Event") == "Hangup" and ev.get("Uniqueid") == channel_id:
                break
        return seen
    finally:
        watch.close()


async def _journal(cfg: Config) -> list[tuple[str, str]]:
    ami = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await ami.connect()
    try:
        return await ami.db_tree(JOURNAL_FAMILY)
    finally:
        ami.close()


async def _scenario(cfg: Config, store: Store) -> dict[str, object]:
    out: dict[str, object] = {}
    # No controller at all: the caller presents a national number with a SIP parameter, as
    # French carriers do; the journal keeps the number alone.
    out["events_before"] = await _caller_presses_1(
        cfg, f"Jean <0{BEFORE[3:]};cpc=ordinary>", "journal-1")
    out["journal"] = await _journal(cfg)
    ctl = await app.start(cfg, store, agi=False)  # AMI up, FastAGI down
    try:
        out["opposed_at_start"] = store.is_opted_out(BEFORE)
        out["during_before"] = store.is_opted_out(DURING)
        out["events_during"] = await _caller_presses_1(cfg, DURING, "journal-2")
        t0 = time.monotonic()
        while not store.is_opted_out(DURING) and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        out["opposed_during"] = store.is_opted_out(DURING)
    finally:
        await ctl.close()
    return out


def test_callers_journaled_by_the_failsafe_are_opposed(pbx_cfg: Config,
                                                       clean_journal: None) -> None:
    store = Store.memory()
    out = asyncio.run(_scenario(pbx_cfg, store))
    assert out["events_before"] == [EVENT_FAILSAFE, EVENT_JOURNALED]
    (key, value), = out["journal"]  # type: ignore[misc]
    assert key == "0" + BEFORE[3:] and abs(int(value) - time.time()) < 120
    assert out["opposed_at_start"] is True and out["during_before"] is False
    assert out["events_during"] == [EVENT_FAILSAFE, EVENT_JOURNALED]
    assert out["opposed_during"] is True
    rows = store.q("SELECT via FROM optouts ORDER BY id")
    assert [r["via"] for r in rows] == ["phone-callback", "phone-callback"]


@pytest.fixture
def optout_digit(pbx_cfg: Config, request: pytest.FixtureRequest) -> Iterator[None]:
    """A campaign whose intro teaches another key (the parameter): the global `ivr pbx up`
    writes from flow.optout_key, set for a moment (the session's sandbox wrote the session's
    key, put back after)."""
    box = Sandbox(pbx_cfg)
    box.cli(f"dialplan set global {GLOBAL_OPTOUT_DIGIT} {request.param}")
    yield
    box.cli(f"dialplan set global {GLOBAL_OPTOUT_DIGIT} {pbx_cfg.flow.optout_key}")


@pytest.mark.parametrize("optout_digit", ["8"], indirect=True)
def test_the_lines_failsafe_takes_the_campaigns_opposition_key(
        pbx_cfg: Config, clean_journal: None, optout_digit: None) -> None:
    """Not a literal 9: a caller who presses the key the outbound intro taught them (8 here)
    is journaled; 9, now no opposition key, gets the legal mentions."""
    eight = asyncio.run(_caller_presses_1(pbx_cfg, "+33199000075", "journal-8", key="8"))
    nine = asyncio.run(_caller_presses_1(pbx_cfg, "+33199000076", "journal-9", key="9"))
    assert eight == [EVENT_FAILSAFE, EVENT_JOURNALED] and nine == [EVENT_FAILSAFE]
    assert [k for k, _ in asyncio.run(_journal(pbx_cfg))] == ["+33199000075"]


@pytest.mark.parametrize("optout_digit", ["#"], indirect=True)
def test_the_lines_failsafe_takes_a_hash_opposition_key(
        pbx_cfg: Config, clean_journal: None, optout_digit: None) -> None:
    """flow.optout_key may be #, which Read() takes as the end of input unless told otherwise:
    the caller who presses it was sent to the legal mentions, not journaled."""
    hashed = asyncio.run(_caller_presses_1(pbx_cfg, "+33199000077", "journal-hash", key="hash"))
    assert hashed == [EVENT_FAILSAFE, EVENT_JOURNALED], hashed
    assert [k for k, _ in asyncio.run(_journal(pbx_cfg))] == ["+33199000077"]


async def _outbound(cfg: Config, store: Store, number: str) -> tuple[dict[str, float], bool]:
    """One call while FastAGI refuses every session: seconds from the failsafe's UserEvent to
    the channel's journal UserEvent ("journaled", if any) and to its hangup ("hangup"), and
    whether the number was opposed within 5 s of it."""
    add_contacts(store, [number])
    watch = Ami(cfg.pbx.host, cfg.pbx.port, cfg.pbx.user, app.ami_secret(cfg))
    await watch.connect()
    ctl = await app.start(cfg, store, agi=False)  # AMI up, FastAGI down
    try:
        await ctl.dialer.dial(store.one("SELECT * FROM contacts WHERE number = ?", (number,)))
        channel = store.one("SELECT channel_id FROM calls WHERE number = ?",
                            (number,))["channel_id"]
        # Until the controller settled it too: closed at the hangup Asterisk sent the watch,
        # before its own copy was read, it settled the call at its close (`reconciled`).
        seen = await failsafe_times(watch, channel, {"hangup", "settled"}, 40, ctl)
        t1 = time.monotonic()
        while not store.is_opted_out(number) and time.monotonic() - t1 < 5:
            await asyncio.sleep(0.05)
        return ({k: t - seen["failsafe"] for k, t in seen.items()},
                store.is_opted_out(number))
    finally:
        await ctl.close()
        watch.close()


def test_a_callee_who_presses_the_opposition_key_in_the_outbound_failsafe_is_opposed(
        pbx_cfg: Config, clean_journal: None) -> None:
    store = Store.memory()
    built = load_manifest(pbx_cfg)["prompts"]
    legal_s, confirm_s = built["legal"]["duration_s"], built["optout_confirm"]["duration_s"]
    # Presses 9 about 2 s into the legal mentions: journaled, told so (optout_confirm, not
    # the legal mentions again), then opposed by this controller.
    times, opposed = asyncio.run(_outbound(pbx_cfg, store, fiction("60")))
    assert opposed
    told = times["hangup"] - times["journaled"]
    assert confirm_s - 0.3 < told < min(legal_s, confirm_s + 1.5), (times, confirm_s, legal_s)
    rows = store.q("SELECT via, campaign FROM optouts")
    assert [(r["via"], r["campaign"]) for r in rows] == [("phone-key", "itest")]
    # Presses 1 about 2 s in: not an opposition, and the legal mentions are heard again whole.
    times, opposed = asyncio.run(_outbound(pbx_cfg, store, fiction("10")))
    assert not opposed and "journaled" not in times and times["hangup"] > legal_s + 1.5
    calls = store.q("SELECT outcome, stage FROM calls ORDER BY id")
    assert [(c["outcome"], c["stage"]) for c in calls] == [("error", "failsafe")] * 2


def test_the_opposition_key_still_counts_after_another_key_cut_the_failsafes_legal_mentions(
        pbx_cfg: Config, clean_journal: None) -> None:
    """A callee who heard the introduction presses 1 as the legal mentions begin (the key it
    taught), then 9 two seconds into them again: the failsafe still listens, so the 9 is
    journaled and the number opposed. Before, the legal mentions were replayed deaf to keys,
    the 9 was lost and the person was called again."""
    store = Store.memory()
    built = load_manifest(pbx_cfg)["prompts"]
    confirm_s = built["optout_confirm"]["duration_s"]
    times, opposed = asyncio.run(_outbound(pbx_cfg, store, fiction("61")))
    assert opposed and "journaled" in times, times
    told = times["hangup"] - times["journaled"]
    assert confirm_s - 0.3 < told < confirm_s + 1.5, (times, confirm_s)
    rows = store.q("SELECT via, campaign FROM optouts")
    assert [(r["via"], r["campaign"]) for r in rows] == [("phone-key", "itest")]
