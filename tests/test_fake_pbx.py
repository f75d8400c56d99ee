"""The fake PBX speaks real AMI and real FastAGI: driven here with Ami (panoramisk inside) and
the controller's own FastAGI server, as Asterisk would be."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from panoramisk import Manager

from ivr.errors import PbxError
from ivr.telephony.ami import Ami, AmiDisconnected
from ivr.telephony.fake_pbx import (Callee, FakePbx, answer, busy, congestion, failed,
                                    hangup_after, no_answer, refuse)
from ivr.telephony.fastagi import AgiApplication, AgiRequest, serve
from ivr.telephony.node import OriginateRefused

SECRET = "s3cret"
Event = dict[str, Any]


async def connected(pbx: FakePbx, **options: Any) -> Ami:
    ami = Ami("127.0.0.1", pbx.ami_port, "ivr", SECRET, **options)
    await ami.connect(timeout=3)
    return ami


async def originate(ami: Ami, number: str, channel_id: str, agi: str = "agi://127.0.0.1:1",
                    timeout_ms: int = 3000, amd: str = "0") -> None:
    await ami.originate(channel=f"Local/{number}@ivr-sim", context="ivr-outbound", exten="s",
                        channel_id=channel_id, other_channel_id=channel_id + "-2",
                        variables={"CALL_ID": "42", "IVR_AGI": agi, "IVR_AMD": amd},
                        timeout_ms=timeout_ms, caller_id='"Camp" <+33100000000>')


async def events_until(ami: Ami, done: Callable[[list[Event]], bool],
                       timeout: float = 5.0) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        while not done(got):
            ev = await ami.next_event(timeout)
            if ev is not None and ev.get("Event") != "FullyBooted":
                got.append(dict(ev))
    return got


def both_hung_up(channel_id: str) -> Callable[[list[Event]], bool]:
    return lambda evs: {e.get("Uniqueid") for e in evs if e["Event"] == "Hangup"} >= \
        {channel_id, channel_id + "-2"}


def finished(channel_id: str) -> Callable[[list[Event]], bool]:
    """Both halves hung up and the OriginateResponse seen, in whatever order."""
    return lambda evs: both_hung_up(channel_id)(evs) and \
        any(e["Event"] == "OriginateResponse" and e["Uniqueid"] == channel_id for e in evs)


def summary(evs: list[Event]) -> list[tuple[str, str, str]]:
    return [(e["Event"], e.get("Uniqueid", ""), e.get("Reason") or e.get("Cause") or "")
            for e in evs if e["Event"] in ("Hangup", "OriginateResponse")]


@pytest.fixture
async def pbx() -> AsyncIterator[FakePbx]:
    async with FakePbx({"+3310": answer(["1"]), "+3370": busy(), "+3371": no_answer(),
                        "+3372": congestion(), "+3373": failed(3), "+3374": refuse()},
                       user="ivr", secret=SECRET) as fake:
        yield fake


class Agi:
    """A tiny FastAGI server on the controller's own stack, scripted per test."""
    server: Any  # an asyncio.Server (serve() is typed as its abstract base)

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.headers: dict[str, str] = {}
        self.results: list[str] = []

    async def __call__(self, req: AgiRequest) -> None:
        self.headers = dict(req.headers)
        for command in self.commands:
            res = await req.send_command(command)
            self.results.append("error" if "error" in res else " ".join(res["result"]).strip())

    async def __aenter__(self) -> str:
        app = AgiApplication()
        app.add_route("ivr", self)
        self.server = await serve(app, "127.0.0.1", 0)
        return f"agi://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_login_and_a_refused_login_that_never_reconnects(pbx: FakePbx) -> None:
    ami = await connected(pbx)
    assert ami.connected and pbx.logins == 1
    assert await ami.ping()
    ami.close()
    bad = Ami("127.0.0.1", pbx.ami_port, "ivr", "wrong", reconnect_s=0.2)
    with pytest.raises(PbxError, match="login refused"):
        await bad.connect(timeout=3)
    await asyncio.sleep(1.5)  # a closed Ami must not come back (panoramisk's pending reconnect)
    assert [a["Secret"] for a in pbx.actions if a["Action"] == "Login"] == [SECRET, "wrong"]


def rejected(reason: str, cause: str) -> list[tuple[str, str, str]]:
    """A callee rejecting the call at once, as the sandbox Asterisk 22 reports it."""
    return [("OriginateResponse", "ivr-1", reason), ("Hangup", "ivr-1", "0"),
            ("Hangup", "ivr-1-2", cause)]


RANG_OUT = [("Hangup", "ivr-1-2", "19"), ("OriginateResponse", "ivr-1", "3"),
            ("Hangup", "ivr-1", "19")]


@pytest.mark.parametrize("number, expected", [
    ("+3370", rejected("5", "17")), ("+3372", rejected("8", "34")),
    ("+3373", rejected("0", "3")), ("+3371", RANG_OUT)])
async def test_unanswered_callees_give_asterisk_reason_and_causes(
        pbx: FakePbx, number: str, expected: list[tuple[str, str, str]]) -> None:
    ami = await connected(pbx)
    await originate(ami, number, "ivr-1", timeout_ms=300)
    evs = await events_until(ami, finished("ivr-1"))
    assert summary(evs) == expected
    assert [e["Response"] for e in evs if e["Event"] == "OriginateResponse"] == ["Failure"]
    assert pbx.originates[0]["Variable"] == {"CALL_ID": "42", "IVR_AGI": "agi://127.0.0.1:1",
                                             "IVR_AMD": "0"}
    assert pbx.originates[0]["ChannelId"] == "ivr-1" and not pbx.live
    ami.close()


async def test_callees_may_be_a_function_and_unknown_numbers_fail() -> None:
    def script(number: str) -> Callee:
        return busy() if number.endswith("70") else failed(3)
    for callees, unknown in ((script, ("0", "3")), ({}, ("0", "1"))):
        async with FakePbx(callees, secret=SECRET) as pbx:
            ami = await connected(pbx)
            await originate(ami, "+3370", "ivr-1")
            await originate(ami, "+3399", "ivr-2")
            evs = await events_until(ami, lambda e: finished("ivr-1")(e) and finished("ivr-2")(e))
            ami.close()
        got = {e["Uniqueid"]: e.get("Reason") or e["Cause"] for e in evs
               if e["Event"] == "OriginateResponse" or e["Uniqueid"] == "ivr-2-2"}
        assert got == {"ivr-1": "5" if callees is script else "0", "ivr-2": unknown[0],
                       "ivr-2-2": unknown[1]}


async def test_a_callee_that_rings_past_the_timeout_is_no_answer(pbx: FakePbx) -> None:
    pbx.callees = {"+3310": answer(delay_s=5)}
    ami = await connected(pbx)
    await originate(ami, "+3310", "ivr-1", timeout_ms=200)
    evs = await events_until(ami, finished("ivr-1"))
    assert summary(evs) == RANG_OUT
    ami.close()


async def test_refused_and_shutting_down_originates_are_typed(pbx: FakePbx) -> None:
    ami = await connected(pbx)
    with pytest.raises(OriginateRefused) as refused:
        await originate(ami, "+3374", "ivr-1")
    assert not refused.value.shutting_down
    pbx.shutting_down = True
    with pytest.raises(OriginateRefused) as stopping:
        await originate(ami, "+3310", "ivr-2")
    assert stopping.value.shutting_down and "shutting down" in str(stopping.value)
    assert len(pbx.originates) == 2 and not pbx.calls  # nothing was dialled
    ami.close()


async def test_answered_call_plays_fastagi_with_the_scripted_keys(pbx: FakePbx) -> None:
    pbx.callees = {"+3310": answer(["1", None, "9", "7"], amd="MACHINE")}
    agi = Agi(['STREAM FILE ivr/intro "129"', "WAIT FOR DIGIT 100",
               'STREAM FILE ivr/legal "9"', 'STREAM FILE ivr/legal "9"', "CHANNEL STATUS",
               "HANGUP", "GET VARIABLE HANGUPCAUSE"])
    async with agi as url:
        ami = await connected(pbx)
        await originate(ami, "+3310", "ivr-7", agi=url, amd="1")
        evs = await events_until(ami, both_hung_up("ivr-7"))
    # the IVR hung up: Asterisk leaves cause 0, the IVR half goes first
    assert summary(evs) == [("OriginateResponse", "ivr-7", "4"), ("Hangup", "ivr-7", "0"),
                            ("Hangup", "ivr-7-2", "0")]
    # the 7 is not an escape digit of that prompt: it plays to the end
    assert agi.results == [str(ord("1")), "0", str(ord("9")), "0", "6", "1", "1 0"]
    assert agi.headers["agi_network_script"] == "ivr"
    assert agi.headers["agi_request"] == url + "/ivr"
    assert (agi.headers["agi_uniqueid"], agi.headers["agi_arg_1"],
            agi.headers["agi_arg_2"]) == ("ivr-7", "42", "MACHINE")
    assert agi.headers["agi_callerid"] == "+33100000000"
    assert pbx.calls["ivr-7"].agi[0] == 'STREAM FILE ivr/intro "129"'
    ami.close()


@pytest.mark.parametrize("keys,hangup_at,results", [
    (["1"], None, ["49", "0"]),             # cuts the sound
    ([None, "2"], None, ["50", "0"]),       # while listening after it
    ([None, "7"], None, ["0", "0"]),        # not an escape digit: dropped, as res_agi does
    ([None, None], 1, ["0", "error"]),      # hung up while listening: 0, then a dead channel
])
async def test_get_option_plays_then_listens_as_two_script_entries(
        pbx: FakePbx, keys: list, hangup_at: int | None, results: list[str]) -> None:
    pbx.callees = {"+3310": answer(keys, hangup_at=hangup_at)}
    agi = Agi(['GET OPTION ivr/intro "129" 100', 'STREAM FILE ivr/legal ""', "HANGUP"])
    async with agi as url:
        ami = await connected(pbx)
        await originate(ami, "+3310", "ivr-3", agi=url)
        await events_until(ami, both_hung_up("ivr-3"))
    assert agi.results[:2] == results
    ami.close()


@pytest.mark.parametrize("callee", [answer(["1"], hangup_at=1),
                                    hangup_after(0.3, prompt_s=0.2)])
async def test_a_callee_hanging_up_leaves_a_dead_channel(pbx: FakePbx, callee: Callee) -> None:
    pbx.callees = {"+3310": callee}
    agi = Agi(['STREAM FILE ivr/intro "129"'] * 3 + ["GET VARIABLE HANGUPCAUSE"])
    async with agi as url:
        ami = await connected(pbx)
        await originate(ami, "+3310", "ivr-1", agi=url)
        evs = await events_until(ami, both_hung_up("ivr-1"))
    hangups = [e["Uniqueid"] for e in evs if e["Event"] == "Hangup"]
    assert hangups == ["ivr-1-2", "ivr-1"]  # the callee's half goes first
    assert agi.results[-2:] == ["error", "1 16"]  # dead channel; the cause is still readable
    assert "error" in agi.results[:2]          # the prompt playing was cut: result=-1
    ami.close()


@pytest.mark.parametrize("failsafe, cause", [(True, "41"), (False, "16")])
async def test_unreachable_fastagi_takes_the_dialplan_failsafe(failsafe: bool, cause: str) -> None:
    async with FakePbx({"+3310": answer()}, secret=SECRET, failsafe=failsafe) as pbx:
        ami = await connected(pbx)
        await originate(ami, "+3310", "ivr-1", agi=f"agi://127.0.0.1:{closed_port()}")
        evs = await events_until(ami, both_hung_up("ivr-1"))
    user = [e for e in evs if e["Event"] == "UserEvent"]
    assert [(e["UserEvent"], e["CallId"], e["Status"]) for e in user] == \
        ([("IvrFailsafe", "42", "FAILURE")] if failsafe else [])
    halves = [("Hangup", "ivr-1-2", cause), ("Hangup", "ivr-1", cause)]  # failsafe: ;2 first
    assert summary(evs) == [("OriginateResponse", "ivr-1", "4")] + \
        (halves if failsafe else halves[::-1])
    ami.close()


async def test_core_show_channels_and_the_hangup_action(pbx: FakePbx) -> None:
    ami = await connected(pbx)
    await originate(ami, "+3371", "ivr-1", timeout_ms=10_000)
    await originate(ami, "+3371", "ivr-2", timeout_ms=10_000)
    listed = await ami.channels()
    assert sorted(m["Uniqueid"] for m in listed) == ["ivr-1", "ivr-1-2", "ivr-2", "ivr-2-2"]
    assert pbx.live == {"ivr-1", "ivr-2"} and pbx.max_live == 2
    await ami.hangup("ivr-1", cause=16)
    evs = await events_until(ami, finished("ivr-1"))
    assert summary(evs) == [("Hangup", "ivr-1-2", "16"), ("OriginateResponse", "ivr-1", "0"),
                            ("Hangup", "ivr-1", "16")]
    assert {m["Uniqueid"] for m in await ami.channels()} == {"ivr-2", "ivr-2-2"}
    with pytest.raises(PbxError):  # an unknown channel is an Error reply, not a hang
        resp = await ami.action({"Action": "Hangup", "Channel": "nope"})
        raise PbxError(resp["Message"])
    ami.close()


async def test_drop_fails_the_pending_action_and_ami_reconnects(pbx: FakePbx) -> None:
    ami = await connected(pbx, reconnect_s=0.2)
    pbx.silent = True  # the next action gets no reply...
    pending = asyncio.create_task(ami.action({"Action": "Ping"}))
    await asyncio.sleep(0.2)
    pbx.drop()         # ...and the link drops under it
    with pytest.raises(AmiDisconnected):
        await pending
    pbx.silent = False
    assert await ami.wait_connected(5) and pbx.logins == 2
    evs = await events_until(ami, lambda e: bool(e))
    assert evs[0]["Event"] == "Reconnected"
    ami.close()


async def test_stop_and_start_listen_again_on_the_same_port(pbx: FakePbx) -> None:
    ami = await connected(pbx, reconnect_s=0.2)
    port = pbx.ami_port
    await originate(ami, "+3371", "ivr-1", timeout_ms=10_000)
    await pbx.stop()
    await asyncio.sleep(0.5)
    assert not ami.connected
    await pbx.start()
    assert pbx.ami_port == port
    assert await ami.wait_connected(5)
    assert {m["Uniqueid"] for m in await ami.channels()} == {"ivr-1", "ivr-1-2"}  # calls lived
    await pbx.crash()  # a real crash: the calls vanish without a Hangup
    await pbx.start()
    assert await ami.wait_connected(5)
    assert await ami.channels() == [] and not pbx.live
    ami.close()


async def test_shutdown_tears_calls_down_then_goes_away_until_start(pbx: FakePbx) -> None:
    pbx.callees = {"+3310": answer(prompt_s=0.05), "+3371": no_answer()}
    agi = Agi(["WAIT FOR DIGIT 100"] * 100 + ["GET VARIABLE HANGUPCAUSE"])
    async with agi as url:
        ami = await connected(pbx, reconnect_s=0.2)
        await originate(ami, "+3371", "ivr-1", timeout_ms=10_000)
        await originate(ami, "+3310", "ivr-2", agi=url)
        async with asyncio.timeout(3):
            while len(pbx.calls["ivr-2"].agi) < 3:
                await asyncio.sleep(0.01)
        await pbx.shutdown()
        evs = await events_until(ami, lambda e: any(x["Event"] == "Shutdown" for x in e))
    assert {(e["Uniqueid"], e["Cause"]) for e in evs if e["Event"] == "Hangup"} == \
        {("ivr-1", "0"), ("ivr-1-2", "0"), ("ivr-2", "0"), ("ivr-2-2", "0")}
    assert ("OriginateResponse", "ivr-1", "0") in summary(evs)
    assert agi.results[-2:] == ["error", "1 0"]  # no callee hung up: cause 0
    assert not ami.connected and not pbx.live
    await pbx.start()
    assert await ami.wait_connected(5)
    await originate(ami, "+3371", "ivr-3", timeout_ms=100)  # taking calls again
    ami.close()


async def test_plain_panoramisk_reads_the_wire_as_it_reads_asterisk(pbx: FakePbx) -> None:
    """Without Ami's workarounds: an Async Originate is a multi-response action that ends with
    its OriginateResponse, CoreShowChannels an EventList ending with its Complete event."""
    manager = Manager(host="127.0.0.1", port=pbx.ami_port, username="ivr", secret=SECRET,
                      ping_delay=60, loop=asyncio.get_running_loop())
    await manager.connect()
    async with asyncio.timeout(3):
        while not manager.authenticated:
            await asyncio.sleep(0.01)
        listed = await manager.send_action({"Action": "CoreShowChannels"})
        replies = await manager.send_action({
            "Action": "Originate", "Channel": "Local/+3370@ivr-sim", "Context": "ivr-outbound",
            "Exten": "s", "Priority": "1", "Async": "true", "ChannelId": "ivr-1"})
    manager.close()
    assert [m.get("Event") or m["Response"] for m in listed] == \
        ["Success", "CoreShowChannelsComplete"]
    assert [(m.get("Event", ""), m["Response"]) for m in replies] == \
        [("", "Success"), ("OriginateResponse", "Failure")]
    assert replies[0]["Message"] == "Originate successfully queued"
