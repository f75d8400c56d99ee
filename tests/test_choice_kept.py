"""A choice once made is kept (issue 17): a refusal or an opposition that a PBX restart or a
controller fault cuts off stays a refusal / an opposition, the contact done; a consent cut off
during the message stays `error` with a retry (the person asked to hear it). On the fake PBX
over real AMI and FastAGI, the real IvrHandler, dialer and SQLite store."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr.callflow import outcomes
from ivr.telephony.fake_pbx import answer
from ivr.telephony.fastagi import AgiRequest

from conftest import Backend
from test_dialer import Rig, contact, fiction, rig


def playing(r: Rig, prompt: str) -> bool:
    return any(prompt in cmd for c in r.pbx.calls.values() for cmd in c.agi)


async def one_call(r: Rig, number: str) -> None:
    await r.dialer.dial(contact(r.store, number))


@pytest.mark.parametrize("key,cut_in,outcome,stage,status", [
    ("2", "legal", "declined_partial", "pbx-legal", "done"),
    ("9", "optout_confirm", "opted_out", "pbx-optout_confirm", "opted_out"),
    ("1", "message", "error", "pbx-message", "pending"),
])
def test_a_pbx_restart_after_the_choice(backend: Backend, key: str, cut_in: str, outcome: str,
                                        stage: str, status: str) -> None:
    number = fiction(20)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with rig(backend, {number: answer([key], prompt_s=1.5)}) as r:
            await one_call(r, number)
            await r.until(lambda: playing(r, cut_in))
            await r.pbx.shutdown()
            await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=15)
            return (r.calls()[0], contact(r.store, number),
                    r.store.q("SELECT kind FROM consents"))
    call, person, consents = asyncio.run(scenario())
    assert (call["outcome"], call["stage"], person["status"]) == (outcome, stage, status)
    assert call["hangup_cause"] == "0"  # the PBX's cut, not a callee's hangup
    choice = {"2": "refusal", "9": "optout", "1": "consent"}[key]
    assert [c["kind"] for c in consents] == [choice]
    assert (call["retry_at"] is not None) == (outcome == "error")


def test_a_controller_fault_after_a_refusal_keeps_it(backend: Backend,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    number = fiction(20)
    play = AgiRequest.stream_file

    async def broken(self: AgiRequest, path: str, escape: str = "") -> Any:
        if path.rsplit("/", 1)[-1].split("-")[0] == "legal":  # ivr/<campaign>/legal-<sha12>
            raise RuntimeError("a bug while playing the legal mentions")
        return await play(self, path, escape)
    monkeypatch.setattr(AgiRequest, "stream_file", broken)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with rig(backend, {number: answer(["2"])}) as r:
            await one_call(r, number)
            await r.until(lambda: r.calls()[0]["outcome"] is not None)
            return r.calls()[0], contact(r.store, number)
    call, person = asyncio.run(scenario())
    assert (call["outcome"], call["stage"]) == ("declined_partial", "controller-legal")
    assert person["status"] == "done" and call["retry_at"] is None


def test_which_outcomes_a_fault_keeps_come_from_the_traits() -> None:
    kept = {t.name for t in outcomes.TABLE if outcomes.kept_after_fault(t.name)}
    assert {"declined_partial", "opted_out", "declined", "message_played"} <= kept
    assert not kept & {"message_partial", "hangup_intro", "no_input"}
