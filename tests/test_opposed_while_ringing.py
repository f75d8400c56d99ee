"""An objection made while the call rings (`ivr optout add`, the console) takes effect at once:
the claim checked the opposition list before the Originate; the run's tick reads the
oppositions added since (agi_ivr.Opposed), and the IVR, on answer, finds the number among them
and plays nothing, without a store round trip. The fake PBX over real AMI and FastAGI, a store
of each backend (conftest.backend); the objection is written through a second connection, as
the CLI's or the console's."""
from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr import app
from ivr.records import privacy
from ivr.telephony.contract import VAR_DONE
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import answer

from conftest import Backend
from test_dialer import HASHES, SECRET, dial_all, fiction, make_cfg, rig
from test_run_control import start_run


def test_a_number_opposed_while_it_rings_hears_nothing_and_ends_opted_out(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    n = fiction(8)
    read_in: list[str] = []  # the thread each read of one number's opposition ran in

    async def scenario() -> dict[str, Any]:
        # Answers 1.5 s after the Originate, then would press 1 (consent) at the first prompt.
        async with rig(backend, {n: answer(["1"], delay_s=1.5, prompt_s=0.1)},
                       max_concurrent=1, ring_timeout_s=10) as r:
            checked = r.store.is_opted_out

            def spy(number: str) -> bool:
                read_in.append(threading.current_thread().name)
                return checked(number)
            monkeypatch.setattr(r.store, "is_opted_out", spy)
            task, _ = await start_run(r)
            await r.until(lambda: len(r.pbx.originates) == 1)
            assert not r.pbx.calls[next(iter(r.pbx.calls))].answered  # still ringing
            assert privacy.optout_add(backend.open(), n, "email", datetime.now(timezone.utc),
                                      "FR")
            await asyncio.wait_for(task, 30)
            await r.settled()
            other = backend.open()
            return {"calls": r.calls(), "agi": [c.agi for c in r.pbx.calls.values()],
                    "consents": other.q("SELECT kind, key FROM consents"),
                    "optouts": other.q("SELECT number, via FROM optouts"),
                    "status": other.q("SELECT status FROM contacts"),
                    "kept": other.number_hash(n) in getattr(r.dialer, "opposed", ())}

    got = asyncio.run(scenario())
    [call] = got["calls"]
    assert (call["outcome"], call["stage"]) == ("opted_out", "opposed-before-answer")
    assert call["keys"] == "" and call["retry_at"] is None
    assert call["answered_at"] is not None
    [agi] = got["agi"]
    assert not [c for c in agi if c.upper().startswith(
        ("STREAM FILE", "GET OPTION", "WAIT FOR DIGIT"))], agi
    # The dialplan is told the call was served (no failsafe): its last and only word
    assert agi == [f"SET VARIABLE {VAR_DONE} 1"], agi
    assert got["consents"] == []  # no proof of a choice the person never made
    assert got["optouts"] == [{"number": n, "via": "email"}]  # the objection as made, alone
    assert got["status"] == [{"status": "opted_out"}]
    # Found by the run's poll of the recent oppositions: no read of the number on answer
    assert read_in == []
    assert got["kept"]


def test_an_adopted_call_opposed_while_it_rang_is_checked_before_the_first_tick(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted `ivr run` adopts a ringing call of the run before it; the callee answers
    before the new run's first tick: the oppositions were read at start, before the adoption."""
    monkeypatch.setenv("IVR_OPTOUT_KEY", "k" * 32)
    backend.key = b"k" * 32
    n = fiction(9)

    async def scenario() -> tuple[list[dict[str, Any]], list[list[str]]]:
        async with rig(backend, {n: answer(["1"], delay_s=2.0, prompt_s=0.1)},
                       ring_timeout_s=10) as r:
            await dial_all(r, [n])
            await r.until(lambda: len(r.pbx.originates) == 1)
            # The earlier run's FastAGI is gone (a killed process); its successor takes its port
            r.ctl.server.close()
            await r.ctl.server.wait_closed()
            assert privacy.optout_add(backend.open(), n, "email", datetime.now(timezone.utc),
                                      "FR")
            cfg2 = make_cfg(backend)
            cfg2.agi.port = r.cfg.agi.port
            node = AmiNode("pbx", "127.0.0.1", r.pbx.ami_port, "ivr", SECRET)
            ctl2 = await app.start(cfg2, r.store, node=node, hashes=HASHES)  # no run, no tick
            try:
                assert [f.number for f in ctl2.dialer.inflight.values()] == [n]  # adopted
                await r.until(lambda: any(c.agi for c in r.pbx.calls.values()), timeout=10)
                await r.until(lambda: r.calls()[0]["outcome"] is not None, timeout=10)
            finally:
                await ctl2.close()
            return r.calls(), [c.agi for c in r.pbx.calls.values()]

    calls, agi = asyncio.run(scenario())
    assert [(c["outcome"], c["stage"]) for c in calls] == [("opted_out", "opposed-before-answer")]
    assert agi == [[f"SET VARIABLE {VAR_DONE} 1"]], agi  # nothing played
