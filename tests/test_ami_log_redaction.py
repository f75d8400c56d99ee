"""`ivr -v` never logs what an AMI message carries: panoramisk's own debug lines print whole
messages (a CoreShowChannel's AGI token and callback secret, the callee's number, an
Originate's IVR_TOKEN); the wrapper in ivr/telephony/ami.py drops them."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from panoramisk.actions import Action

from ivr.telephony.ami import Ami, _PanoramiskLog

SECRET = "z3uOX24U-h8oeOqiYzoBfPfFiB1C6gJS"  # the opposition line's callback secret
TOKEN = "a805b85391bc6831b9638d4a3d12cded9c76f9a7b192542f"  # a call's AGI token
NUMBER = "33199000230"  # a callee
AMI_SECRET = "ami-s3cret"


def _send(writer: asyncio.StreamWriter, fields: dict[str, str]) -> None:
    writer.write(("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode())


async def _read(reader: asyncio.StreamReader) -> dict[str, str] | None:
    fields: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode()
        if not line:
            return None
        if line in ("\r\n", "\n"):
            return fields
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PBX that answers Login, Originate, CoreShowChannels (one call in the IVR, one caller
    on the opposition line) and Ping, as Asterisk does."""
    writer.write(b"Asterisk Call Manager/11.0.0\r\n")
    while (action := await _read(reader)) is not None:
        aid = {"ActionID": action.get("ActionID", "")}
        name = action.get("Action", "").lower()
        if name == "login":
            _send(writer, {"Response": "Success", **aid, "Message": "Authentication accepted"})
        elif name == "originate":
            _send(writer, {"Response": "Success", **aid,
                           "Message": "Originate successfully queued"})
        elif name == "coreshowchannels":
            _send(writer, {"Response": "Success", **aid, "EventList": "start",
                           "Message": "Channels will follow"})
            _send(writer, {"Event": "CoreShowChannel", **aid,
                           "Channel": f"Local/+{NUMBER}@ivr-sim-00000002;1",
                           "CallerIDNum": f"+{NUMBER}", "Application": "AGI",
                           "ApplicationData": f"agi://127.0.0.1:4610/ivr,3,,{TOKEN}"})
            _send(writer, {"Event": "CoreShowChannel", **aid,
                           "Channel": "Local/s@ivr-callback-00000006;2", "Application": "AGI",
                           "ApplicationData": f"agi://127.0.0.1:4573/callback,{SECRET}"})
            _send(writer, {"Event": "CoreShowChannelsComplete", **aid, "EventList": "Complete",
                           "ListItems": "2"})
        else:
            _send(writer, {"Response": "Success", **aid, "Ping": "Pong"})
        await writer.drain()
    writer.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def _leaks(records: list[logging.LogRecord]) -> list[str]:
    lines = [r.getMessage() for r in records]
    return [line for line in lines
            if any(s in line for s in (SECRET, TOKEN, NUMBER, AMI_SECRET))]


async def test_debug_log_shows_no_secret_token_or_number(port: int,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ami = Ami("127.0.0.1", port, "ivr", AMI_SECRET, name="pbx", heartbeat_s=60)
    await ami.connect(timeout=5)
    try:
        await ami.originate(channel=f"Local/+{NUMBER}@ivr-sim", context="ivr-outbound",
                            exten="s", channel_id="c1", other_channel_id="c2",
                            variables={"IVR_TOKEN": TOKEN}, timeout_ms=3000,
                            caller_id="+33100000000")
        shown = await ami.channels()
    finally:
        ami.close()
    assert len(shown) == 2 and TOKEN in shown[0]["ApplicationData"]  # the data did arrive
    assert _leaks(caplog.records) == []
    # the useful lines that print no message are still there
    assert any("node pbx: Manager connected" in r.getMessage() for r in caplog.records)


async def test_pre_formatted_action_lines_keep_only_their_first_words(
        caplog: pytest.LogCaptureFixture) -> None:
    """panoramisk's "Fail to send %r" % action and "Adding action ... : %s", str(action)."""
    caplog.set_level(logging.DEBUG)
    ami = Ami("127.0.0.1", 9, "ivr", AMI_SECRET, name="pbx")
    adapter = _PanoramiskLog(ami)
    action = Action({"Action": "Originate", "Channel": f"Local/+{NUMBER}@ivr-sim",
                     "Variable": [f"IVR_TOKEN={TOKEN}"]})
    try:
        raise OSError("broken pipe")
    except OSError:
        adapter.exception("Fail to send %r" % action)
    adapter.info('Adding action "%s" to awaiting list: %s', "originate", str(action))
    adapter.debug("message interpreted: %r", action)
    adapter.debug("some future line: %r", action)
    assert _leaks(caplog.records) == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["node pbx: Fail to send (AMI message not shown: it can carry secrets)",
                     "node pbx: Adding action (AMI message not shown: it can carry secrets)"]
    assert caplog.records[0].exc_info is not None  # the reason it failed is still logged
