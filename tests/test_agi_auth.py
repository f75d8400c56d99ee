"""Issue 19: the per-call FastAGI token (drawn at claim time, only its hash stored, spent by the
first accepted session) and the session gate of the `ivr` route."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import add_contact, make_config
from ivr import app
from ivr.errors import ConfigError, PbxError
from ivr.telephony.sandbox import SECRET_CONFS, Sandbox
from ivr.callflow.agi_gate import Refused, SessionGate
from ivr.callflow.agi_ivr import IvrHandler
from ivr.callflow.flow import FlowOptions
from ivr.campaign.planning import claim
from ivr.store import Store
from ivr.telephony import agi_auth
from ivr.telephony.contract import (ARG_AMD_STATUS, ARG_CALL_ID, ARG_TOKEN,
                                    GLOBAL_CALLBACK_SECRET)
from ivr.telephony.fastagi import AgiHangup, StreamResult
from test_agi_ivr import Channel

OPEN = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
NUM = "+33162000010"


def test_tokens_are_long_random_and_compared_by_hash() -> None:
    a, b = agi_auth.new_token(), agi_auth.new_token()
    assert a != b and len(bytes.fromhex(a)) * 8 >= 128
    h = agi_auth.token_hash(a)
    assert a not in h and agi_auth.token_matches(a, h)
    assert not agi_auth.token_matches(b, h)
    assert not agi_auth.token_matches("", h) and not agi_auth.token_matches(a, None)
    assert not agi_auth.token_matches(h, h)  # knowing the stored hash is not enough
    assert agi_auth.secret_matches("s3cret", "s3cret")
    assert not agi_auth.secret_matches("s3cre", "s3cret")
    assert not agi_auth.secret_matches("", "") and not agi_auth.secret_matches("x", "")


def _claimed(s: Store) -> tuple[dict[str, Any], str]:
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"})
    got = claim(cfg, s, add_contact(s, NUM, at=OPEN), "pbx", OPEN)
    assert got.call is not None and got.token is not None
    return got.call, got.token


def test_the_claim_draws_a_token_and_the_store_keeps_only_its_hash(store: Store) -> None:
    s = store
    call, token = _claimed(s)
    assert call["token_hash"] == agi_auth.token_hash(token)
    dump = "\n".join(s.db.conn.iterdump())
    assert token not in dump and agi_auth.token_hash(token) in dump
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"})
    assert token not in repr(claim(cfg, s, add_contact(s, "+33162000011", at=OPEN), "pbx",
                                   OPEN))


def test_an_accepted_session_spends_the_token_in_the_store(store: Store) -> None:
    s = store
    call, token = _claimed(s)
    s.mark_answered(call["id"], OPEN)
    row = s.call(call["id"])
    assert row is not None and row["token_hash"] is None
    assert not agi_auth.token_matches(token, row["token_hash"])


@dataclass
class Flight:
    channel_id: str
    session_opened: bool = False


class Rig:
    """A gate over an in-memory store with one claimed attempt in flight."""

    def __init__(self) -> None:
        self.store = Store.memory()
        self.call, self.token = _claimed(self.store)
        self.id = int(self.call["id"])
        self.flights: dict[int, Flight] = {self.id: Flight(self.call["channel_id"])}
        self.active: set[int] = set()
        self.gate = SessionGate(self.store.call, self.flights, self.active)

    def headers(self, **change: str) -> dict[str, str]:
        h = {ARG_CALL_ID: str(self.id), ARG_TOKEN: self.token,
             "agi_uniqueid": self.call["channel_id"]}
        return h | change


def test_the_real_session_is_admitted_once() -> None:
    rig = Rig()
    assert rig.gate.admit(rig.headers())["id"] == rig.id
    assert rig.active == {rig.id} and rig.flights[rig.id].session_opened
    with pytest.raises(Refused, match="already used"):  # concurrent replay
        rig.gate.admit(rig.headers())
    rig.active.clear()
    with pytest.raises(Refused, match="already used"):  # replay after the session
        rig.gate.admit(rig.headers())


@pytest.mark.parametrize("change,reason", [
    ({ARG_TOKEN: ""}, "wrong, missing or spent token"),
    ({ARG_TOKEN: "0" * 48}, "wrong, missing or spent token"),
    ({"agi_uniqueid": "ivr-other-1"}, "not the one originated"),
    ({"agi_uniqueid": ""}, "not the one originated"),
    ({ARG_CALL_ID: "999"}, "no such attempt"),
    ({ARG_CALL_ID: "1; DROP"}, "not an attempt id"),
    ({ARG_CALL_ID: ""}, "not an attempt id"),
    ({ARG_CALL_ID: "\u00b2"}, "not an attempt id"),  # a digit to isdigit(), not to int()
    ({ARG_CALL_ID: "\u0663"}, "not an attempt id"),  # an Arabic-Indic 3: ASCII digits only
])
def test_anything_else_is_refused_without_the_token(change: dict[str, str],
                                                    reason: str) -> None:
    rig = Rig()
    with pytest.raises(Refused, match=reason) as err:
        rig.gate.admit(rig.headers(**change))
    assert rig.token not in str(err.value)
    assert rig.active == set() and not rig.flights[rig.id].session_opened
    assert rig.gate.admit(rig.headers())["id"] == rig.id  # a forgery spends nothing


def test_a_call_not_in_flight_here_is_refused_even_with_its_token() -> None:
    rig = Rig()
    rig.flights.clear()
    with pytest.raises(Refused, match="not in flight"):
        rig.gate.admit(rig.headers())


def test_a_spent_token_is_refused_after_a_restart() -> None:
    """The flight was adopted afresh (session_opened False) but the store's hash is gone."""
    rig = Rig()
    rig.store.mark_answered(rig.id, OPEN)
    with pytest.raises(Refused, match="spent token"):
        rig.gate.admit(rig.headers())


def _handler(rig: Rig, finished: list[int]) -> IvrHandler:
    return IvrHandler(rig.store, {}, FlowOptions(), lambda: OPEN, on_finished=finished.append,
                      gate=rig.gate)


@pytest.mark.parametrize("change", [{ARG_TOKEN: "f" * 48}, {ARG_TOKEN: ""},
                                    {"agi_uniqueid": "ivr-forged-1"}, {ARG_CALL_ID: "77"}])
def test_a_forged_ivr_session_is_closed_unserved_and_writes_nothing(
        change: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    rig, finished = Rig(), []
    before = list(rig.store.db.conn.iterdump())
    ch = Channel(StreamResult(digit="1", endpos=10), headers=rig.headers(
        **{ARG_AMD_STATUS: "HUMAN"}, **change))
    asyncio.run(_handler(rig, finished)(ch))
    # Not even a HANGUP: a real call refused here takes the dialplan's failsafe (its legal
    # mentions), not a silent hang-up
    assert ch.calls == [] and finished == []
    assert list(rig.store.db.conn.iterdump()) == before
    assert "session refused" in caplog.text and rig.token not in caplog.text


def test_the_real_session_runs_and_its_replay_is_refused() -> None:
    rig, finished = Rig(), []
    handler = _handler(rig, finished)
    asyncio.run(handler(Channel(headers=rig.headers(**{ARG_AMD_STATUS: "MACHINE"}))))
    row = rig.store.call(rig.id)
    assert row is not None and row["outcome"] == "machine" and row["token_hash"] is None
    assert finished == [rig.id] and rig.active == set()
    before = list(rig.store.db.conn.iterdump())
    replay = Channel(StreamResult(digit="1", endpos=10),
                     headers=rig.headers(**{ARG_AMD_STATUS: "HUMAN"}))
    asyncio.run(handler(replay))
    assert replay.calls == [] and finished == [rig.id]
    assert list(rig.store.db.conn.iterdump()) == before


def test_the_sandbox_writes_the_callback_secret_it_keeps_in_a_0600_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(agi_auth.CALLBACK_SECRET_ENV, raising=False)
    cfg = make_config(tmp_path)
    box = Sandbox(cfg)
    secret = app.callback_secret(cfg)  # the controller reads what `ivr pbx up` writes
    kept = box.state / "callback_secret"
    assert kept.read_text() == secret and kept.stat().st_mode & 0o777 == 0o600
    assert f"{GLOBAL_CALLBACK_SECRET} = {secret}" in box._extensions({}).splitlines()
    assert "extensions.conf" in SECRET_CONFS and "manager.conf" in SECRET_CONFS
    assert Sandbox(cfg).callback_secret() == secret  # stable across runs
    monkeypatch.setenv(agi_auth.CALLBACK_SECRET_ENV, "from-the-environment-42")
    assert app.callback_secret(cfg) == box.callback_secret() == "from-the-environment-42"


def test_an_external_pbx_needs_the_callback_secret_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path, pbx={"mode": "external"})
    monkeypatch.delenv(agi_auth.CALLBACK_SECRET_ENV, raising=False)
    with pytest.raises(PbxError, match="IVR_CALLBACK_SECRET is not set"):
        app.callback_secret(cfg)
    assert not (tmp_path / ".sandbox").exists()
    for bad in ("short", "has,a,comma-0123456789", "has space 0123456789"):
        monkeypatch.setenv(agi_auth.CALLBACK_SECRET_ENV, bad)
        with pytest.raises(ConfigError, match="16 or more"):
            app.callback_secret(cfg)


def test_the_claimed_row_is_taken_without_a_read_and_the_checks_stay() -> None:
    """The dialer hands the gate the rows it claimed: the session reads nothing from the store,
    and a forgery is refused all the same (the real session then reads the row)."""
    rig = Rig()
    reads: list[int] = []

    def read(call_id: int) -> dict | None:
        reads.append(call_id)
        return rig.store.call(call_id)
    known = {rig.id: dict(rig.call)}
    rig.gate = SessionGate(read, rig.flights, rig.active, known=known)
    with pytest.raises(Refused, match="wrong, missing or spent token"):
        rig.gate.admit(rig.headers(**{ARG_TOKEN: "0" * 48}))
    assert reads == [] and known == {}  # taken once, even by a forgery
    assert rig.gate.admit(rig.headers())["id"] == rig.id
    assert reads == [rig.id]
    rig.gate.known[rig.id] = dict(rig.call)  # a stale copy cannot reopen a spent session
    with pytest.raises(Refused, match="already used"):
        rig.gate.admit(rig.headers())


@dataclass
class NodeFlight(Flight):
    node: str = "n1"


class CutChannel(Channel):
    """A session whose callee hangs up during the intro with cause 0 (no Reason header)."""

    @property
    def writer(self) -> Any:
        return type("W", (), {"get_extra_info": staticmethod(lambda name: ("127.0.0.1", 1)),
                              "close": staticmethod(lambda: None)})()


@pytest.mark.parametrize("n2_restarting", [False, True])
def test_a_cut_call_asks_whether_its_own_node_went_down(n2_restarting: bool) -> None:
    """Found in review: the IVR asked whether ANY node of the pool went down, so a callee on
    n1 hanging up (cause 0) while n2 restarted became `error` and was called again. It asks
    about the call's node, as node_events does for a failed Originate."""
    rig, asked = Rig(), []
    rig.flights[rig.id] = NodeFlight(rig.call["channel_id"], node="n1")

    async def went_down(within_s: float = 2.0, node: str | None = None) -> bool:
        asked.append(node)
        return n2_restarting and node != "n1"  # n1 stayed up
    handler = IvrHandler(rig.store, {}, FlowOptions(), lambda: OPEN, gate=rig.gate,
                         pbx_went_down=went_down)
    ch = CutChannel(AgiHangup("callee gone"), "0",
                    headers=rig.headers(**{ARG_AMD_STATUS: "HUMAN"}))
    asyncio.run(handler(ch))
    row = rig.store.call(rig.id)
    assert asked == ["n1"]
    assert row is not None and row["outcome"] != "error" and row["retry_at"] is None
