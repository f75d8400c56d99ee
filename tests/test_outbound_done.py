"""The outbound failsafe rests on IVR_DONE, not on AGISTATUS alone: a FastAGI session accepted
then closed unserved (the PBX's address left out of agi.allowed_peers, a controller killed
mid-call) gives AGISTATUS=SUCCESS. The controller says done only for a flow it ran to its end;
`ivr check` refuses an agi.allowed_peers that leaves the PBX out."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr import config
from ivr.errors import ConfigError
from ivr.telephony.contract import VAR_DONE
from ivr.telephony.fake_pbx import answer
from ivr.telephony.fastagi import AgiRequest

from conftest import Backend
from test_dialer import contact, fiction, rig

DONE_CMD = f"SET VARIABLE {VAR_DONE} 1"


def _agi_of_one_call(backend: Backend, keys: list[Any]) -> tuple[list[str], dict[str, Any]]:
    number = fiction(20)

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        async with rig(backend, {number: answer(keys)}) as r:
            await r.dialer.dial(contact(r.store, number))
            await r.until(lambda: r.calls()[0]["outcome"] is not None)
            (call,) = r.pbx.calls.values()
            return list(call.agi), r.calls()[0]
    return asyncio.run(scenario())


@pytest.mark.parametrize("key,outcome", [("1", "message_played"), ("2", "declined"),
                                         ("9", "opted_out")])
def test_a_flow_run_to_its_end_tells_the_dialplan_it_is_done(backend: Backend, key: str,
                                                            outcome: str) -> None:
    agi, call = _agi_of_one_call(backend, [key])
    assert call["outcome"] == outcome
    assert agi[-1] == DONE_CMD  # the last word, after the last prompt
    assert agi.count(DONE_CMD) == 1


def test_a_flow_cut_by_a_controller_fault_leaves_the_failsafe_to_the_dialplan(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    play = AgiRequest.stream_file

    async def broken(self: AgiRequest, path: str, escape: str = "") -> Any:
        if path.rsplit("/", 1)[-1].split("-")[0] == "legal":
            raise RuntimeError("a bug while playing the legal mentions")
        return await play(self, path, escape)
    monkeypatch.setattr(AgiRequest, "stream_file", broken)
    agi, call = _agi_of_one_call(backend, ["2"])
    assert call["outcome"] == "declined_partial"  # the choice stands (outcomes.kept_after_fault)
    assert agi and DONE_CMD not in agi  # not served to its end: the callee gets the failsafe


@pytest.mark.parametrize("data,where", [
    ({"agi": {"allowed_peers": ["127.0.0.2"]}}, "pbx.host 127.0.0.1"),
    # agi://127.0.0.1 is dialled from 127.0.0.1 only: ::1 admits none of its sessions
    ({"agi": {"allowed_peers": ["::1"]}}, "pbx.host 127.0.0.1"),
    ({"pbx": {"host": "10.0.0.5"}}, "pbx.host 10.0.0.5"),
    ({"pbx": {"nodes": [{"name": "a", "host": "localhost"}, {"name": "b", "host": "10.1.1.1"}]},
      "agi": {"allowed_peers": ["127.0.0.1", "10.2.0.0/16"]}}, "pbx.nodes[1].host 10.1.1.1"),
])
def test_allowed_peers_leaving_the_pbx_out_is_refused(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    text = str(err.value)
    assert text.startswith("agi.allowed_peers: ") and where in text and "\n" not in text


@pytest.mark.parametrize("data", [
    {},
    {"agi": {"host": "::1", "allowed_peers": ["::1"]}},  # agi://[::1] is dialled from ::1
    {"pbx": {"host": "localhost"}, "agi": {"allowed_peers": ["127.0.0.0/8"]}},
    {"pbx": {"host": "10.0.0.5"}, "agi": {"allowed_peers": ["10.0.0.0/24"]}},
    {"pbx": {"host": "pbx.lan"}},  # a host name is not resolved: nothing to compare
])
def test_allowed_peers_holding_the_pbx_is_accepted(data: dict[str, Any]) -> None:
    cfg = config.from_dict(data)
    assert cfg.pbx.host == data.get("pbx", {}).get("host", cfg.pbx.host)
    assert cfg.agi.allowed_peers == data.get("agi", {}).get("allowed_peers",
                                                           cfg.agi.allowed_peers)
