"""Issue 6.4 and 13: the inbound opposition line, with a simulated inbound call in the sandbox.

The call carries nothing from the controller (no IVR_AGI): like a real inbound call, it reaches
FastAGI through the global IVR_AGI_URL that `ivr pbx up` wrote from the config's agi.port, which
is not the default port here.
"""
from __future__ import annotations

import asyncio

import pytest

from ivr import app
from ivr.config import Agi, Config
from ivr.store.sqlite import Store
from ivr.telephony.contract import (CALLBACK_CONTEXT, CALLBACK_EXTEN, GLOBAL_AGI_URL,
                                    SIM_CALLER_CONTEXT)
from ivr.telephony.sandbox import Sandbox

from .conftest import fiction, originate_and_wait


async def _call_in(cfg: Config, store: Store, caller: str, behaviour: str) -> None:
    ctl = await app.start(cfg, store)
    try:
        await originate_and_wait(cfg, {
            "Channel": f"Local/{behaviour}@{SIM_CALLER_CONTEXT}", "Context": CALLBACK_CONTEXT,
            "Exten": CALLBACK_EXTEN, "CallerID": caller, "ChannelId": f"cb-{behaviour}"})
    finally:
        await ctl.close()


def test_the_pbx_global_follows_the_configured_agi_port(pbx_cfg: Config) -> None:
    assert pbx_cfg.agi.port != Agi().port  # a non-default port: nothing hard-coded can match
    shown = Sandbox(pbx_cfg).cli("dialplan show globals")
    assert f"{GLOBAL_AGI_URL}=agi://127.0.0.1:{pbx_cfg.agi.port}" in shown.replace(" ", "")


@pytest.mark.parametrize("presented", ["+33199000077", "0199000077"])
def test_caller_who_presses_1_is_opted_out_by_caller_id(pbx_cfg: Config,
                                                        presented: str) -> None:
    store = Store.memory()
    asyncio.run(_call_in(pbx_cfg, store, presented, "press1"))
    assert store.is_opted_out(fiction("77"))
    assert store.one("SELECT via FROM optouts")["via"] == "phone-callback"


def test_caller_who_does_not_confirm_is_not_opted_out(pbx_cfg: Config) -> None:
    store = Store.memory()
    asyncio.run(_call_in(pbx_cfg, store, "+33199000078", "silent"))
    assert not store.is_opted_out(fiction("78"))
    assert store.q("SELECT * FROM optouts") == []
