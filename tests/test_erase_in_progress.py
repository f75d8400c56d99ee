"""An erasure while a call to the number rings or runs: refused in one line (the CLI, the
console), since the call's end would write the person's keys and choice back; an attempt left
open long ago by a dead controller does not block it; and a call erased anyway never writes a
proof row nor an opposition for the erased placeholder. The fake PBX over real AMI and
FastAGI and a store of each backend (conftest.backend); the erasure is a second connection's,
as `ivr gdpr erase` from another terminal."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import CALLER_ID, Backend, add_contact, attempt, shipped_config
from ivr.cli import cli
from ivr.errors import IvrError
from ivr.records import privacy
from ivr.records.privacy import ERASED_NUMBER
from ivr.store import Store
from ivr.store.base import parse_utc, utc
from ivr.telephony.fake_pbx import answer
from test_dialer import fiction, rig
from test_run_control import start_run
import web_fixture
from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def in_progress(number: str, call_id: int, started: datetime | str) -> str:
    """The refusal, naming the minute (rounded up) an hour after the attempt's start."""
    start = parse_utc(started if isinstance(started, str) else utc(started))  # as stored
    free = -(-(start + timedelta(hours=1)).timestamp() // 60) * 60
    hhmm = datetime.fromtimestamp(free, timezone.utc).strftime("%H:%M")
    return (f"a call to {number} is in progress (attempt {call_id}): erase it once it ends "
            f"(or after {hhmm} UTC if no run is active); nothing was erased")


@pytest.fixture
def keyed(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    return backend


def test_an_erasure_while_the_call_rings_is_refused_and_the_call_goes_on(keyed: Backend) -> None:
    n = fiction(7)

    async def scenario() -> dict[str, Any]:
        async with rig(keyed, {n: answer(["1"], delay_s=1.5, prompt_s=0.1)},
                       max_concurrent=1, ring_timeout_s=10) as r:
            task, _ = await start_run(r)
            await r.until(lambda: len(r.pbx.originates) == 1)
            [ringing] = r.calls()
            with pytest.raises(IvrError) as refused:
                privacy.gdpr_erase(keyed.open(), n, datetime.now(timezone.utc))
            await asyncio.wait_for(task, 30)
            await r.settled()
            other = keyed.open()
            got = {"refused": str(refused.value), "id": ringing["id"], "calls": r.calls(),
                   "started": ringing["started_at"],
                   "consents": other.q("SELECT number, kind FROM consents")}
            got["after"] = privacy.gdpr_erase(other, n, datetime.now(timezone.utc))  # ended now
            return got

    got = asyncio.run(scenario())
    assert got["refused"] == in_progress(n, got["id"], got["started"])
    [call] = got["calls"]  # the call went on, its number and proof intact
    assert (call["number"], call["outcome"], call["keys"]) == (n, "message_played", "1")
    assert got["consents"] == [{"number": n, "kind": "consent"}]
    assert got["after"]["calls"] == 1 and got["after"]["consents"] == 1


@pytest.mark.parametrize("key", ["9", "1"])
def test_a_call_erased_anyway_writes_no_proof_nor_opposition_of_the_placeholder(
        keyed: Backend, key: str) -> None:
    """The erasure sees the attempt as one a dead controller left open over an hour ago (its
    `now` two hours on): allowed. The callee then answers and presses 9 (opposition) or 1."""
    n = fiction(7)

    async def scenario() -> dict[str, Any]:
        async with rig(keyed, {n: answer([key], delay_s=1.5, prompt_s=0.1)},
                       max_concurrent=1, ring_timeout_s=10) as r:
            task, _ = await start_run(r)
            await r.until(lambda: len(r.pbx.originates) == 1)
            later = datetime.now(timezone.utc) + timedelta(hours=2)
            assert privacy.gdpr_erase(keyed.open(), n, later)["calls"] == 1
            await asyncio.wait_for(task, 30)
            await r.settled()
            other = keyed.open()
            return {"calls": r.calls(), "consents": other.q("SELECT number FROM consents"),
                    "optouts": other.q("SELECT number, via FROM optouts")}

    got = asyncio.run(scenario())
    [call] = got["calls"]
    assert call["number"] == ERASED_NUMBER and call["contact_id"] is None
    assert call["outcome"] == {"9": "opted_out", "1": "message_played"}[key]  # not lost
    assert got["consents"] == []
    assert all(o["number"] != ERASED_NUMBER for o in got["optouts"]), got["optouts"]
    assert call["keys"] == ""  # the erasure cleared them; the call's end does not write them
    # Key 9 is the person's objection, made after the erasure: their own number is opposed.
    assert got["optouts"] == ([{"number": n, "via": "phone-key"}] if key == "9" else [])


def test_only_a_recent_attempt_without_outcome_blocks_an_erasure(keyed: Backend) -> None:
    store, now = keyed.open(), datetime.now(timezone.utc)
    recent, stale, ended = "+33199000021", "+33199000022", "+33199000023"
    calls = {}
    for number, started in ((recent, now - timedelta(minutes=50)),
                            (stale, now - timedelta(minutes=70)), (ended, now)):
        contact = add_contact(store, number, at=now, campaigns=(CAMPAIGN,))
        calls[number] = attempt(store, contact, CAMPAIGN, CALLER_ID, started)
    store.finish_unanswered(calls[ended]["id"], "busy", "17", now, None)
    with pytest.raises(IvrError) as refused:
        privacy.gdpr_erase(store, recent, now)
    assert str(refused.value) == in_progress(recent, calls[recent]["id"], now - timedelta(
        minutes=50))
    assert store.contacts_by_number([recent])  # nothing erased
    # Left open over an hour ago (a controller that died, none to settle it): no block.
    assert privacy.gdpr_erase(store, stale, now)["contacts"] == 1
    assert privacy.gdpr_erase(store, ended, now)["contacts"] == 1


@pytest.mark.parametrize("started, says", [((13, 4, 30, 500000), "after 14:05 UTC"),
                                            ((13, 4, 0, 0), "after 14:04 UTC"),
                                            ((23, 30, 0, 1000), "after 00:31 UTC")])
def test_the_refusal_says_when_an_attempt_stops_blocking(
        keyed: Backend, started: tuple[int, int, int, int], says: str) -> None:
    """A dead controller's attempt never ends: the refusal names the minute, rounded up, an
    hour after its start, and from then on the erasure goes through."""
    store, n = keyed.open(), "+33199000025"  # stored times keep milliseconds
    start = datetime(2026, 12, 3, *started, tzinfo=timezone.utc)
    call = attempt(store, add_contact(store, n, at=start, campaigns=(CAMPAIGN,)), CAMPAIGN,
                   CALLER_ID, start)
    for at in (start + timedelta(minutes=1), start + timedelta(hours=1, milliseconds=-1)):
        with pytest.raises(IvrError) as refused:
            privacy.gdpr_erase(store, n, at)
        assert str(refused.value) == (f"a call to {n} is in progress (attempt {call['id']}): "
                                      f"erase it once it ends (or {says} if no run is active); "
                                      "nothing was erased")
    said = datetime.strptime(says, "after %H:%M UTC").time()
    free = datetime.combine(start.date() + timedelta(days=said < start.time()), said,
                            timezone.utc)  # the minute named: the hour has passed
    assert privacy.gdpr_erase(store, n, free)["contacts"] == 1


def test_the_cli_and_the_console_say_the_refusal_in_one_line(
        keyed: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n, now = "+33199000024", datetime.now(timezone.utc)
    # The console, and the CLI on its store (SQLite: its file, with the CLI's key).
    monkeypatch.setattr(web_fixture, "store_at", lambda path, busy_timeout_s: Store.open(
        path, optout_key=keyed.key, busy_timeout_s=busy_timeout_s))
    web = make_web(tmp_path, monkeypatch, keyed)
    (tmp_path / "cli").mkdir()
    cfg_file = shipped_config(tmp_path / "cli", {"path": str(web.path)} if web.path
                              else keyed.section())
    call = attempt(web.store, add_contact(web.store, n, at=now, campaigns=(CAMPAIGN,)),
                   CAMPAIGN, CALLER_ID, now)
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "gdpr", "erase", n])
    assert (result.exit_code, result.output) == (1, f"error: {in_progress(n, call['id'], now)}\n")
    c = web.client()
    token = login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/rights/erase",
               data={"number": n, "confirm": n, "csrf_token": token})
    assert r.status_code == 303
    assert in_progress(n, call["id"], now) in c.get(r.headers["location"]).text
    assert web.store.contacts_by_number([n])  # nothing erased
