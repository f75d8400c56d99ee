"""The FastAGI URL each outbound call carries (IVR_AGI) is the one the dialplan's globals carry:
an IPv6 agi.host in brackets, or Asterisk reads "::1:4573" as another address and every
answered callee hears silence."""
from __future__ import annotations

import asyncio
from pathlib import Path

from ivr import app
from ivr.telephony import contract
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx

from conftest import Backend
from test_dialer import HASHES, SECRET, make_cfg


def test_an_ipv6_agi_host_is_dialled_in_brackets(tmp_path: Path) -> None:
    backend = Backend("sqlite", tmp_path)
    cfg = make_cfg(backend)
    cfg.agi.host = "::1"

    async def scenario() -> str:
        async with FakePbx({}, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            ctl = await app.start(cfg, backend.open(), node=node, hashes=HASHES)
            try:
                return ctl.dialer.agi_url
            finally:
                await ctl.close()
    url = asyncio.run(scenario())
    assert url == f"agi://[::1]:{cfg.agi.port}"
    assert url == contract.agi_url(cfg.agi.host, cfg.agi.port)
