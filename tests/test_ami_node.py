"""AmiNode, the PbxNode over AMI, against the fake PBX: typed events and typed errors only."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ivr.errors import PbxError
from ivr.telephony.ami_node import AmiNode, parse_event
from ivr.telephony.fake_pbx import FakePbx, answer, busy, failed, no_answer, refuse
from ivr.telephony.fastagi import AgiApplication, AgiRequest, serve
from ivr.telephony.node import (ActionTimeout, ChannelHangup, Failsafe, NodeDisconnected,
                                NodeEvent, OriginateRefused, OriginateRequest, OriginateResult,
                                PbxNode, Reconnected)

SECRET = "s3cret"


def request(number: str, channel_id: str, agi: str = "agi://127.0.0.1:1",
            timeout_ms: int = 3000) -> OriginateRequest:
    return OriginateRequest(channel=f"Local/{number}@ivr-sim", channel_id=channel_id,
                            caller_id="+33100000000", timeout_ms=timeout_ms,
                            context="ivr-outbound", exten="s",
                            variables={"CALL_ID": "42", "IVR_AGI": agi})


@pytest.fixture
async def pbx() -> AsyncIterator[FakePbx]:
    async with FakePbx({"+3310": answer(["1"]), "+3370": busy(), "+3371": no_answer(),
                        "+3373": failed(1), "+3374": refuse("Permission denied")},
                       user="ivr", secret=SECRET) as fake:
        yield fake


@pytest.fixture
async def node(pbx: FakePbx) -> AsyncIterator[AmiNode]:
    n = AmiNode("n1", "127.0.0.1", pbx.ami_port, "ivr", SECRET, max_channels=4,
                reconnect_s=0.2)
    await n.connect(timeout=3)
    yield n
    n.close()


async def collect(node: AmiNode, done: Callable[[list[NodeEvent]], bool],
                  timeout: float = 5.0) -> list[NodeEvent]:
    got: list[NodeEvent] = []
    async with asyncio.timeout(timeout):
        async for ev in node.events():
            got.append(ev)
            if done(got):
                break
    return got


def has(kind: type, channel_id: str = "", half: bool | None = None
        ) -> Callable[[list[NodeEvent]], bool]:
    return lambda evs: any(isinstance(e, kind) and (not channel_id or
                                                    getattr(e, "channel_id", "") == channel_id)
                           and (half is None or getattr(e, "callee_half", None) == half)
                           for e in evs)


async def test_it_is_a_pbx_node_and_up_after_login(node: AmiNode, pbx: FakePbx) -> None:
    assert isinstance(node, PbxNode)
    assert node.up and node.name == "n1" and node.max_channels == 4 and pbx.logins == 1
    with pytest.raises(PbxError, match="login refused"):
        await AmiNode("n2", "127.0.0.1", pbx.ami_port, "ivr", "wrong").connect(timeout=3)


async def test_originate_sends_the_request_as_an_async_originate(node: AmiNode,
                                                                 pbx: FakePbx) -> None:
    await node.originate(request("+3370", "ivr-1"))
    sent = pbx.originates[0]
    assert (sent["Channel"], sent["ChannelId"], sent["OtherChannelId"]) == \
        ("Local/+3370@ivr-sim", "ivr-1", "ivr-1-2")
    assert (sent["Async"], sent["Timeout"], sent["CallerID"], sent["Priority"]) == \
        ("true", "3000", "+33100000000", "1")
    assert (sent["Context"], sent["Exten"]) == ("ivr-outbound", "s")
    assert sent["Variable"] == {"CALL_ID": "42", "IVR_AGI": "agi://127.0.0.1:1"}


def rejected(reason: int, cause: int) -> list[NodeEvent]:
    return [OriginateResult("n1", "ivr-1", success=False, reason=reason),
            ChannelHangup("n1", "ivr-1", 0), ChannelHangup("n1", "ivr-1", cause, True)]


@pytest.mark.parametrize("number, expected", [
    ("+3370", rejected(5, 17)), ("+3373", rejected(0, 1)),
    ("+3371", [ChannelHangup("n1", "ivr-1", 19, True), OriginateResult("n1", "ivr-1", False, 3),
               ChannelHangup("n1", "ivr-1", 19)])])
async def test_failed_originates_give_reason_and_causes(node: AmiNode, number: str,
                                                        expected: list[NodeEvent]) -> None:
    await node.originate(request(number, "ivr-1", timeout_ms=300))
    assert await collect(node, lambda evs: len(evs) == 3) == expected


async def test_answered_originate_then_hangups_with_their_cause(node: AmiNode) -> None:
    async def ivr(req: AgiRequest) -> None:
        await req.send_command('STREAM FILE ivr/intro "1"')
        await req.send_command("HANGUP")
    app = AgiApplication()
    app.add_route("ivr", ivr)
    server: Any = await serve(app, "127.0.0.1", 0)
    url = f"agi://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        await node.originate(request("+3310", "ivr-9", agi=url))
        evs = await collect(node, has(ChannelHangup, half=True))
    finally:
        server.close()
    assert evs == [OriginateResult("n1", "ivr-9", success=True, reason=4),
                   ChannelHangup("n1", "ivr-9", 0), ChannelHangup("n1", "ivr-9", 0, True)]


async def test_failsafe_is_a_typed_event(node: AmiNode) -> None:
    await node.originate(request("+3310", "ivr-1", agi="agi://127.0.0.1:1"))
    evs = await collect(node, has(ChannelHangup, half=False))
    assert evs == [OriginateResult("n1", "ivr-1", True, 4),
                   Failsafe("n1", 42, "FAILURE", "ivr-1"),  # the channel that raised it
                   ChannelHangup("n1", "ivr-1", 41, True), ChannelHangup("n1", "ivr-1", 41)]


async def test_refused_and_shutting_down_are_typed(node: AmiNode, pbx: FakePbx) -> None:
    with pytest.raises(OriginateRefused, match="Permission denied") as refused:
        await node.originate(request("+3374", "ivr-1"))
    assert not refused.value.shutting_down
    pbx.shutting_down = True
    with pytest.raises(OriginateRefused) as stopping:
        await node.originate(request("+3310", "ivr-2"))
    assert stopping.value.shutting_down
    assert isinstance(stopping.value, PbxError)


async def test_link_dropped_mid_originate_is_node_disconnected(node: AmiNode,
                                                               pbx: FakePbx) -> None:
    pbx.silent = True  # the Originate reaches the PBX, its reply never comes back
    pending = asyncio.create_task(node.originate(request("+3310", "ivr-1")))
    await asyncio.sleep(0.2)
    pbx.drop()
    with pytest.raises(NodeDisconnected):
        await pending
    assert len(pbx.originates) == 1
    pbx.silent = False
    assert await node.wait_up(5) and node.up
    assert await collect(node, has(Reconnected)) == [Reconnected("n1")]
    assert len(pbx.originates) == 1  # never re-sent after the reconnect


async def test_down_link_and_silent_pbx_are_typed(pbx: FakePbx) -> None:
    node = AmiNode("n1", "127.0.0.1", pbx.ami_port, "ivr", SECRET, action_timeout=0.3,
                   reconnect_s=5)
    await node.connect(timeout=3)
    try:
        pbx.silent = True
        with pytest.raises(ActionTimeout):
            await node.originate(request("+3310", "ivr-1"))
        pbx.drop()
        await asyncio.sleep(0.1)
        assert not node.up
        with pytest.raises(NodeDisconnected):
            await node.hangup("ivr-1")
    finally:
        node.close()


async def test_channels_are_the_live_uniqueids(node: AmiNode, pbx: FakePbx) -> None:
    assert await node.channels() == set()
    await node.originate(request("+3371", "ivr-1", timeout_ms=10_000))
    assert await node.channels() == {"ivr-1", "ivr-1-2"}
    await node.hangup("ivr-1")
    await pbx.wait_idle(3)
    assert await node.channels() == set()


def test_parse_event_ignores_what_the_dialer_does_not_need() -> None:
    assert parse_event("n", {"Event": "FullyBooted"}) is None
    assert parse_event("n", {"Event": "UserEvent", "UserEvent": "Other"}) is None
    assert parse_event("n", {"Event": "Hangup", "Uniqueid": "a-2", "Cause": "x"}) == \
        ChannelHangup("n", "a", None, callee_half=True)
    assert parse_event("n", {"Event": "OriginateResponse", "Uniqueid": "a",
                             "Response": "Failure", "Reason": ""}) == \
        OriginateResult("n", "a", False, None)


# -- Ami itself, under the node ----------------------------------------------------------------
async def test_events_end_when_the_node_is_closed(node: AmiNode) -> None:
    reader = asyncio.create_task(collect(node, lambda evs: False))
    await asyncio.sleep(0.1)
    node.close()
    assert await asyncio.wait_for(reader, 2) == []


async def test_reconnects_pause_between_attempts(node: AmiNode, pbx: FakePbx,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """panoramisk truncates reconnect_timeout to whole seconds: 0.2 would be 0, a busy loop."""
    attempts: list[float] = []
    connect = node.ami._mgr.connect

    def counting(*args: object, **kwargs: object) -> object:
        attempts.append(asyncio.get_running_loop().time())
        return connect(*args, **kwargs)
    monkeypatch.setattr(node.ami._mgr, "connect", counting)
    await pbx.stop()
    await asyncio.sleep(1.0)
    assert 2 <= len(attempts) <= 7
    await pbx.start()
    assert await node.wait_up(3)
