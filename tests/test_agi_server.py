"""FastAGI pieces that need no PBX: the result parser, the peer check and the per-session read
watchdog (on a real loopback socket)."""
from __future__ import annotations

import asyncio
import time

import pytest
from panoramisk.utils import parse_agi_result

from ivr.telephony.fastagi import AgiApplication, AgiHangup, AgiRequest, parse_result


@pytest.mark.parametrize("line", [
    "200 result=49 endpos=1234", "200 result=0 endpos=0", "200 result=-1 endpos=0",
    "200 result=0", "200 result=-1", "200 result=1 (16)", "200 result= (timeout)",
    "200 result=49 endpos=12 extra", "510 Invalid or unknown command",
    "511 Command Not Permitted on a dead channel or intercept routine",
    "520-Invalid command syntax.  Proper usage follows:", "100 result=0 Trying...", "HANGUP"])
def test_fast_path_reads_results_as_panoramisk_does(line: str) -> None:
    assert parse_result(line) == parse_agi_result(line)


async def test_peer_verdicts_are_remembered_and_bounded() -> None:
    app = AgiApplication(allowed_peers=["10.0.0.0/8"])  # built in a running loop, as in app.py
    for _ in range(2):  # the second time from the cache: same answers
        assert app._peer_allowed(("10.1.2.3", 4573))
        assert not app._peer_allowed(("127.0.0.1", 4573))
        assert not app._peer_allowed(("not-an-ip", 1))
        assert not app._peer_allowed(None)
    for i in range(3000):  # a scan from many addresses
        assert not app._peer_allowed((f"192.168.{i // 256}.{i % 256}", 1))
    assert len(app._peers) <= 1024
    assert app._peer_allowed(("10.1.2.3", 4573))


async def _session(replies: list[tuple[float, bytes]], read_timeout: float
                   ) -> tuple[list[str], str, float, bool]:
    """A peer that answers each command after a delay (None: never); returns what we read."""
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for delay, reply in replies:
            await reader.readline()
            await asyncio.sleep(delay)
            writer.write(reply)
        await asyncio.sleep(30)
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = AgiRequest(app=None, headers={}, reader=reader, writer=writer, encoding="utf-8",
                     read_timeout=read_timeout)
    got, error, t0 = [], "", time.monotonic()
    try:
        for _ in replies:
            got.append((await req.send_command("WAIT FOR DIGIT 100"))["result"][0])
        await req.send_command("WAIT FOR DIGIT 100")  # the peer never answers this one
    except AgiHangup as exc:
        error = str(exc)
    finally:
        req.close_watchdog()
        writer.close()
        server.close()
    return got, error, time.monotonic() - t0, req.lost


def test_a_peer_that_stops_answering_is_dropped_after_read_timeout() -> None:
    got, error, took, lost = asyncio.run(_session([(0.0, b"200 result=0\n")], 0.3))
    assert got == ["0"]
    assert "no reply within 0.3 s" in error and lost
    assert 0.3 <= took < 1.5


def test_a_slow_but_live_session_outlasts_read_timeout() -> None:
    """The limit is per read, not per session: five replies 0.2 s apart with a 0.3 s limit."""
    replies = [(0.2, f"200 result={i}\n".encode()) for i in range(1, 6)]
    got, error, took, _ = asyncio.run(_session(replies, 0.3))
    assert got == ["1", "2", "3", "4", "5"]
    assert "no reply within" in error and took > 1.0
