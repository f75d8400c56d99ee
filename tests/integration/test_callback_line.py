"""Issue 6.4: the inbound opposition line, with a simulated inbound call in the sandbox."""
from __future__ import annotations

import asyncio

import pytest

from ivr import app
from ivr.config import Config
from ivr.store.sqlite import Store

from .conftest import fiction, originate_and_wait


async def _call_in(cfg: Config, store: Store, caller: str, behaviour: str) -> None:
    ctl = await app.start(cfg, store)
    try:
        await originate_and_wait(cfg, {
            "Channel": f"Local/{behaviour}@ivr-sim-caller", "Context": "ivr-callback",
            "Exten": "s", "CallerID": caller, "ChannelId": f"cb-{behaviour}",
            "Variable": [f"IVR_AGI=agi://127.0.0.1:{cfg.agi.port}"]})
    finally:
        await ctl.close()

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
