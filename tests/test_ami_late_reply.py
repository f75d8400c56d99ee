"""An AMI action that times out (a loaded PBX answering an Originate late) no longer swallows
what comes after it (ivr/telephony/ami.py `Ami.action`). Its future was cancelled while it
stayed in panoramisk's table of pending actions: the late Response found it done and left it
there, and the OriginateResponse, which carries the same ActionID, went to that dead entry, so
the dialer never heard the call's result. A busy call then kept its slot until its deadline
(minutes) and was stored as error/deadline, not busy."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conftest import Backend
from ivr import app
from ivr.campaign.clock import Clock
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, busy
from ivr.telephony.node import ActionTimeout

from test_dialer import HASHES, SECRET, add_contacts, contact, fiction, make_cfg


class SlowPbx(FakePbx):
    """Answers each Originate 0.5 s late: past the node's 0.2 s action timeout."""

    def _originate(self, session: Any, action: Any, reply: Any) -> None:
        asyncio.get_running_loop().call_later(0.5, super()._originate, session, action, reply)


def test_a_late_originate_reply_still_gives_the_calls_outcome(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, list[int], list[dict[str, Any]], int]:
        backend = Backend("sqlite", tmp_path)
        store = backend.open()
        add_contacts(store, [fiction(70)])
        async with SlowPbx({fiction(70): busy()}, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET, action_timeout=0.2)
            ctl = await app.start(make_cfg(backend), store, Clock(), node=node, hashes=HASHES)
            try:
                timed_out = False
                try:
                    await ctl.dialer.dial(contact(store, fiction(70)))
                except ActionTimeout:
                    timed_out = True
                for _ in range(80):  # 4 s at most; a busy call ends within a second
                    await asyncio.sleep(0.05)
                    if not ctl.dialer.inflight:
                        break
                ctl.dialer.writer.flush()
                pending = len(getattr(node, "_ami")._mgr.protocol.responses) \
                    if hasattr(node, "_ami") else 0
                return (timed_out, list(ctl.dialer.inflight),
                        store.q("SELECT outcome, hangup_cause FROM calls"), pending)
            finally:
                await ctl.close()
    timed_out, in_flight, rows, pending = asyncio.run(scenario())
    assert timed_out  # the reply came after the action's timeout
    assert in_flight == [] and rows == [{"outcome": "busy", "hangup_cause": "17"}]
    assert pending == 0  # no dead entry left in panoramisk's table
