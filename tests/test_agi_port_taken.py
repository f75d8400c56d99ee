"""Found by a security probe: a local process that listened on agi.port while no controller
did (a crash, an upgrade) received an answered call's FastAGI session, token included, held
it, and replayed it to the restarted controller, which adopted the call and served it: a
consent the callee never gave was stored. A session opens once per call, so a call the node
lists inside an AGI session at adoption admits none."""
from __future__ import annotations

import asyncio
from typing import Any

from conftest import Backend
from test_dialer import HASHES, SECRET, contact, fiction, rig
from ivr import app
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import answer


async def _kill(ctl: app.Controller) -> None:
    """As SIGKILL leaves a controller: its FastAGI listener and AMI link gone, nothing
    settled, the call still up on the PBX."""
    ctl.server.close()
    for pump in ctl.pumps:
        pump.cancel()
    for node in ctl.nodes:
        node.close()
    await asyncio.sleep(0.1)


async def _replay(port: int, headers: bytes) -> list[str]:
    """The harvested session sent to the new controller, pressing 1 at the first prompt."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(headers)
    commands: list[str] = []
    try:
        async with asyncio.timeout(5):
            while line := await reader.readline():
                commands.append(line.decode().strip())
                writer.write(b"200 result=49 endpos=800\n" if len(commands) == 1
                             else b"200 result=0 endpos=800\n")
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return commands


def test_a_session_taken_while_no_controller_listened_is_not_admitted(
        backend: Backend) -> None:
    number = fiction(12)

    async def scenario() -> tuple[bool, list[str], list[dict[str, Any]], list[dict[str, Any]]]:
        async with rig(backend, {number: answer([], delay_s=1.0)}, ring_timeout_s=10) as r:
            await r.dialer.dial(contact(r.store, number))
            await asyncio.sleep(0.2)
            await _kill(r.ctl)
            port, harvested, held = r.cfg.agi.port, asyncio.get_running_loop().create_future(), []

            async def squat(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                raw = await reader.readuntil(b"\n\n")
                held.append(writer)  # Asterisk's session kept open: the channel stays up
                if not harvested.done():
                    harvested.set_result(raw)
            squatter = await asyncio.start_server(squat, "127.0.0.1", port)
            headers = await asyncio.wait_for(harvested, 10)
            squatter.close()
            await squatter.wait_closed()
            node = AmiNode("pbx", "127.0.0.1", r.pbx.ami_port, "ivr", SECRET)
            restarted = await app.start(r.cfg, r.store, node=node, hashes=HASHES)
            try:
                flight = next(iter(restarted.dialer.by_call.values()))
                commands = await _replay(port, headers)
                for writer in held:
                    writer.close()  # the squatter lets go: the call hangs up
                await r.until(lambda: not restarted.dialer.inflight, timeout=15)
                restarted.dialer.writer.flush()
                return (flight.session_opened, commands, r.calls(),
                        r.store.q("SELECT kind FROM consents"))
            finally:
                await restarted.close()
    refused, commands, calls, consents = asyncio.run(scenario())
    assert refused and commands == []  # not one prompt for the replayed session
    assert consents == [] and [c["outcome"] for c in calls] == ["error"]
