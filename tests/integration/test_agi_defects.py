"""Issue 4.1: panoramisk 1.4's FastAGI defects, each shown handled (real sockets, real Asterisk)."""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from panoramisk.fast_agi import Application as StockApplication

from ivr.telephony.fastagi import (CHANNEL_UP, AgiApplication, AgiRequest, networks,
                                   peer_allowed, serve)
from ivr.config import Config

from .conftest import fiction, originate_and_wait

PORT = 4591


def test_stock_sync_route_is_broken_on_this_python() -> None:
    async def add_sync_route() -> None:  # panoramisk's Application wants a current loop
        StockApplication().add_route("x", lambda request: None)
    if sys.version_info >= (3, 11):
        with pytest.raises(AttributeError):  # asyncio.coroutine is gone
            asyncio.run(add_sync_route())


async def _agi_call(pbx_cfg: Config, route: str, handler: Any, number: str) -> None:
    """Run `handler` for one real call reaching FastAGI through [ivr-sim-agi-raw]."""
    agi = AgiApplication(allowed_peers=["127.0.0.1"])
    agi.add_route(route, handler)
    server = await serve(agi, "127.0.0.1", PORT)
    try:
        await originate_and_wait(pbx_cfg, {
            "Channel": f"Local/{number}@ivr-sim", "Context": "ivr-sim-agi-raw", "Exten": "s",
            "ChannelId": f"raw-{route}",
            "Variable": [f"IVR_AGI=agi://127.0.0.1:{PORT}", f"IVR_ROUTE={route}",
                         "CALL_ID=4242"]})
    finally:
        server.close()
        await server.wait_closed()

def test_sync_route_runs_on_a_real_call(pbx_cfg: Config) -> None:
    seen: list[str] = []

    def sync_handler(request: AgiRequest) -> None:  # a plain function, no coroutine
        seen.append(request.headers["agi_arg_1"])
    asyncio.run(_agi_call(pbx_cfg, "sync", sync_handler, fiction("30")))
    assert seen == ["4242"]


def test_hangup_line_does_not_shift_results(pbx_cfg: Config) -> None:
    """Without AGISIGHUP=no Asterisk sends 'HANGUP' out of band when the callee hangs up."""
    results: dict[str, Any] = {}

    async def handler(req: AgiRequest) -> None:
        results["play"] = await req.send_command('STREAM FILE ivr/intro ""')
        results["var"] = await req.send_command("GET VARIABLE CALL_ID")
        results["hung_up"] = req.hung_up
    asyncio.run(_agi_call(pbx_cfg, "sighup", handler, fiction("50")))  # hangs up in the intro
    assert results["hung_up"] is True
    assert "error" in results["play"]          # the playback was cut by the hangup
    assert results["var"]["result"] == ("1", "4242")  # the next result is its own, not HANGUP


def test_520_usage_text_is_read_whole(pbx_cfg: Config) -> None:
    results: dict[str, Any] = {}

    async def handler(req: AgiRequest) -> None:
        results["bad"] = await req.send_command("STREAM FILE")  # missing arguments
        results["var"] = await req.send_command("GET VARIABLE CALL_ID")
    asyncio.run(_agi_call(pbx_cfg, "usage", handler, fiction("30")))
    assert results["bad"]["error"] == "AGIUsageError"
    assert "Usage" in results["bad"]["msg"] or "usage" in results["bad"]["msg"]
    assert results["var"]["result"] == ("1", "4242")


async def _connect_and(send: bytes, close: bool = True) -> tuple[AgiApplication, float]:
    agi = AgiApplication(allowed_peers=["127.0.0.1"], header_timeout=2)
    called: list[int] = []
    agi.add_route("ivr", lambda r: called.append(1))
    server = await serve(agi, "127.0.0.1", PORT + 1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT + 1)
    writer.write(send)
    await writer.drain()
    if close:
        writer.close()
    data = await asyncio.wait_for(reader.read(), 5)  # the server closes on its side
    elapsed = loop.time() - t0
    assert data == b"" and not called
    server.close()
    await server.wait_closed()
    return agi, elapsed


def test_connection_closed_before_headers_does_not_spin() -> None:
    agi, elapsed = asyncio.run(_connect_and(b"agi_network_script: ivr\n"))
    assert elapsed < 1.0 and agi.active == 0


def test_half_open_connection_times_out() -> None:
    agi, elapsed = asyncio.run(_connect_and(b"agi_network_script: ivr\n", close=False))
    assert 1.5 < elapsed < 4.0 and agi.active == 0


def test_oversized_headers_are_refused() -> None:
    agi, _ = asyncio.run(_connect_and(b"x" * 100_000))
    assert agi.active == 0


def test_only_configured_peers_are_served() -> None:
    allowed = networks(["10.9.9.9/32", "::1"])
    assert not peer_allowed(("127.0.0.1", 5555), allowed)
    assert peer_allowed(("10.9.9.9", 5555), allowed)
    assert peer_allowed(("::1", 5555, 0, 0), allowed)
    assert not peer_allowed(None, allowed)
    assert not peer_allowed(("not-an-ip", 1), allowed)


def test_a_peer_not_configured_is_closed_at_once() -> None:
    async def go() -> int:
        agi = AgiApplication(allowed_peers=["10.9.9.9/32"])
        agi.add_route("ivr", lambda r: None)
        server = await serve(agi, "127.0.0.1", PORT + 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT + 2)
        writer.write(b"agi_network_script: ivr\n\n")
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:  # closed with our bytes unread: a reset is a refusal too
            data = b""
        server.close()
        await server.wait_closed()
        assert data == b""
        return agi.refused
    assert asyncio.run(go()) == 1


def test_typed_commands_on_a_real_call(pbx_cfg: Config) -> None:
    """The typed methods read what Asterisk 22 really answers: a key, a whole prompt, a missing
    file, a timeout, the line up, a variable."""
    seen: dict[str, Any] = {}

    async def handler(req: AgiRequest) -> None:
        seen["status"] = await req.channel_status()
        seen["call_id"] = await req.get_variable("CALL_ID")
        seen["unset"] = await req.get_variable("IVR_NOT_SET")
        seen["missing"] = await req.stream_file("ivr/no_such_prompt", "1")
        seen["timeout"] = await req.wait_for_digit(100)
        seen["key"] = await req.stream_file("ivr/intro", "1")  # the callee presses 1 in it
        await req.hangup()
    asyncio.run(_agi_call(pbx_cfg, "typed", handler, fiction("10")))
    assert seen["status"] == CHANNEL_UP
    assert (seen["call_id"], seen["unset"]) == ("4242", None)
    assert seen["missing"].failed  # result=-1 with the line up: agi_ivr's PromptUnplayable
    assert seen["timeout"] is None
    assert seen["key"].digit == "1" and seen["key"].endpos > 0, seen["key"]
