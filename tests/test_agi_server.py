"""FastAGI pieces that need no PBX: the result parser, the peer check, the per-session read
watchdog and the typed commands (on a real loopback socket)."""
from __future__ import annotations

import ast
import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from panoramisk.utils import parse_agi_result

from ivr.telephony.fastagi import (CHANNEL_UP, REFUSAL_LOG_MAX, REFUSAL_LOG_S, REPLY_LINES_MAX,
                                   AgiApplication, AgiCommandError, AgiHangup, AgiRequest,
                                   StreamResult, parse_result, quote)


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


# -- the typed commands, over a real loopback socket ------------------------------------------

Call = tuple[str, tuple[Any, ...]]


async def _typed(replies: list[bytes], calls: list[Call]) -> tuple[list[Any], list[str], bool]:
    """A peer that reads one command per reply and answers it, then closes; each call's result
    (or the exception it raised), the command lines it read, and whether HANGUP was seen."""
    commands: list[str] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            commands.append((await reader.readline()).decode().rstrip("\n"))
            writer.write(reply)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    req = AgiRequest(app=None, headers={}, reader=reader, writer=writer, encoding="utf-8",
                     read_timeout=5)
    results: list[Any] = []
    try:
        for name, args in calls:
            try:
                results.append(await getattr(req, name)(*args))
            except (AgiHangup, AgiCommandError, ValueError) as exc:
                results.append(exc)
    finally:
        req.close_watchdog()
        writer.close()
        server.close()
    return results, commands, req.hung_up


def typed(replies: list[bytes], *calls: Call) -> tuple[list[Any], list[str], bool]:
    return asyncio.run(_typed(replies, list(calls)))


def test_stream_file_reads_each_result_kind() -> None:
    results, commands, _ = typed(
        [b"200 result=49 endpos=1234\n", b"200 result=0 endpos=8000\n",
         b"200 result=0 endpos=0\n", b"200 result=-1 endpos=0\n"],
        ("stream_file", ("ivr/intro", "129")), ("stream_file", ("ivr/legal", "9")),
        ("stream_file", ("ivr/missing",)), ("stream_file", ("ivr/intro", "9")))
    assert commands == ['STREAM FILE ivr/intro "129"', 'STREAM FILE ivr/legal "9"',
                        'STREAM FILE ivr/missing ""', 'STREAM FILE ivr/intro "9"']
    key, ended, nothing, failed = results
    assert key == StreamResult(digit="1", endpos=1234) and not key.played_nothing
    assert ended == StreamResult(digit=None, endpos=8000) and not ended.played_nothing
    assert nothing.played_nothing and not nothing.failed
    assert failed.failed and not failed.played_nothing and failed.digit is None


def test_get_option_plays_and_listens_in_one_command() -> None:
    """A key during the sound, one while listening after it (endpos: the sound's length), none
    (or a hangup while listening: res_agi says 0 for both), a sound it cannot open."""
    results, commands, _ = typed(
        [b"200 result=49 endpos=1234\n", b"200 result=50 endpos=38400\n",
         b"200 result=0 endpos=38400\n", b"200 result=-1 endpos=0\n"],
        ("get_option", ("ivr/intro", "129", 5000)), ("get_option", ("ivr/intro", "12", 5000)),
        ("get_option", ("ivr/a b", "9", 0)), ("get_option", ("ivr/missing", "", 100)))
    assert commands == ['GET OPTION ivr/intro "129" 5000', 'GET OPTION ivr/intro "12" 5000',
                        'GET OPTION "ivr/a b" "9" 0', 'GET OPTION ivr/missing "" 100']
    cut, after, none, failed = results
    assert (cut, after, none) == (StreamResult(digit="1", endpos=1234),
                                  StreamResult(digit="2", endpos=38400), StreamResult(endpos=38400))
    assert failed.failed


def test_stream_file_quotes_its_arguments_and_refuses_bad_digits() -> None:
    results, commands, _ = typed([b"200 result=0 endpos=10\n"],
                                 ("stream_file", ("ivr/a b\"c\\d", "")),
                                 ("stream_file", ("ivr/x", '1" EXEC')))
    assert commands == ['STREAM FILE "ivr/a b\\"c\\\\d" ""']  # the bad one was never sent
    assert results[0] == StreamResult(endpos=10)
    assert isinstance(results[1], ValueError)
    assert quote("ivr/intro") == "ivr/intro" and quote("") == '""'


def test_wait_for_digit_key_timeout_and_hangup() -> None:
    results, commands, _ = typed([b"200 result=50\n", b"200 result=0\n", b"200 result=-1\n"],
                                 ("wait_for_digit", (3000,)), ("wait_for_digit", (3000,)),
                                 ("wait_for_digit", (3000,)))
    assert commands == ["WAIT FOR DIGIT 3000"] * 3
    assert results[:2] == ["2", None]
    assert isinstance(results[2], AgiHangup)


def test_get_variable_channel_status_and_hangup() -> None:
    results, commands, _ = typed(
        [b"200 result=1 (16)\n", b"200 result=1 (two words)\n", b"200 result=0\n",
         b"200 result=6\n", b"200 result=4\n", b"200 result=-1\n", b"200 result=1\n"],
        ("get_variable", ("HANGUPCAUSE",)), ("get_variable", ("CHANNEL(state)",)),
        ("get_variable", ("UNSET",)), ("channel_status", ()), ("channel_status", ()),
        ("channel_status", ()), ("hangup", ()))
    assert commands == ["GET VARIABLE HANGUPCAUSE", 'GET VARIABLE "CHANNEL(state)"',
                        "GET VARIABLE UNSET", "CHANNEL STATUS", "CHANNEL STATUS",
                        "CHANNEL STATUS", "HANGUP"]
    assert results == ["16", "two words", None, CHANNEL_UP, 4, None, None]


def test_a_dead_channel_is_a_hangup_and_a_refused_command_an_error() -> None:
    usage = (b"520-Invalid command syntax.  Proper usage follows:\n"
             b"Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
             b"520 End of proper usage.\n")
    results, _, _ = typed(
        [b"511 Command Not Permitted on a dead channel or intercept routine\n", usage,
         b"510 Invalid or unknown command\n", b"200 result=1 (4242)\n"],
        ("stream_file", ("ivr/intro",)), ("stream_file", ("ivr/intro",)),
        ("channel_status", ()), ("get_variable", ("CALL_ID",)))
    dead, bad_usage, unknown, after = results
    assert isinstance(dead, AgiHangup)
    assert isinstance(bad_usage, AgiCommandError) and "Usage: STREAM FILE" in str(bad_usage)
    assert isinstance(unknown, AgiCommandError)
    assert after == "4242"  # the whole usage text was read: the next result is its own


def test_the_out_of_band_hangup_line_is_skipped_and_remembered() -> None:
    results, _, hung_up = typed([b"HANGUP\n200 result=0 endpos=0\n", b"200 result=1 (16)\n"],
                                ("stream_file", ("ivr/intro", "9")),
                                ("get_variable", ("HANGUPCAUSE",)))
    assert results == [StreamResult(), "16"] and hung_up


async def _flooded(opening: bytes, line: bytes, lines: int) -> tuple[Any, bool, int]:
    """A peer answering one command with `opening` then `line` `lines` times, and no end: the
    command's result or error, whether the session counts the connection lost, and how many
    lines the peer got to write before the controller cut it."""
    sent = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readline()
        writer.write(opening)
        try:
            for _ in range(lines):
                writer.write(line)
                await writer.drain()
                sent += 1
        except ConnectionError:
            pass
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    req = AgiRequest(app=None, headers={}, reader=reader, writer=writer, encoding="utf-8",
                     read_timeout=5)
    try:
        result: Any = await req.send_command("STREAM FILE ivr/legal \"\"")
    except (AgiHangup, AgiCommandError) as exc:
        result = exc
    finally:
        req.close_watchdog()
        writer.close()
        server.close()
    return result, req.lost, sent


@pytest.mark.parametrize("opening, line", [
    (b"520-Invalid command syntax.  Proper usage follows:\n", b"x" * 8000 + b"\n"),
    (b"", b"100 result=0 Trying...\n"),
    (b"", b"HANGUP\n")])
def test_a_reply_that_never_ends_is_cut_not_kept(opening: bytes, line: bytes) -> None:
    """A local peer (no token needed: a refused session is still sent a command) answering
    with an endless usage text grew the controller by ~450 MB a second; endless "100" or
    HANGUP lines burnt its CPU. A reply is cut past REPLY_LINES_MAX lines, as a hangup."""
    result, lost, _ = asyncio.run(_flooded(opening, line, 100_000))
    assert isinstance(result, AgiHangup) and f"{REPLY_LINES_MAX} lines" in str(result)
    assert lost


def test_a_long_usage_text_within_the_bound_is_read_whole() -> None:
    usage = b"520-Invalid command syntax.  Proper usage follows:\n" + \
        b"Usage: line\n" * (REPLY_LINES_MAX - 2) + b"520 End of proper usage.\n"
    results, _, _ = typed([usage, b"200 result=1 (7)\n"], ("stream_file", ("ivr/intro",)),
                          ("get_variable", ("CALL_ID",)))
    assert isinstance(results[0], AgiCommandError) and str(results[0]).count("Usage: line") == \
        REPLY_LINES_MAX - 2
    assert results[1] == "7"


def test_set_variable_quotes_name_and_value() -> None:
    results, commands, _ = typed([b"200 result=1\n", b"200 result=1\n"],
                                 ("set_variable", ("IVR_DONE", "1")),
                                 ("set_variable", ("X", "two words")))
    assert commands == ["SET VARIABLE IVR_DONE 1", 'SET VARIABLE X "two words"']
    assert results == [None, None]


async def _connect_times(app: AgiApplication, times: int) -> None:
    """Open `times` connections to `app` from 127.0.0.1; each is closed by the server."""
    from ivr.telephony.fastagi import serve
    server = await serve(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(times):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await reader.read() == b""  # accepted, then closed unserved
            writer.close()
    finally:
        server.close()


async def test_a_refused_peer_is_logged_once_a_minute_naming_the_key_to_fix(
        caplog: pytest.LogCaptureFixture) -> None:
    """Asterisk reports a connection closed unserved as AGISTATUS=SUCCESS: without this line
    the admin of a PBX missing from agi.allowed_peers has nothing to go on."""
    now = [1000.0]
    app = AgiApplication(allowed_peers=["10.0.0.0/8"])
    app._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="ivr.telephony.fastagi"):
        await _connect_times(app, 5)  # a flood: one line
        now[0] += 59
        await _connect_times(app, 1)
        told = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(told) == 1 and app.refused == 6
        message = told[0].getMessage()
        assert "127.0.0.1" in message and "agi.allowed_peers" in message
        assert "10.0.0.0/8" in message and "\n" not in message
        now[0] += 1  # a minute after the first: said again
        await _connect_times(app, 1)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


async def test_the_refusal_log_stays_bounded_under_a_scan(
        caplog: pytest.LogCaptureFixture) -> None:
    """Connections from many addresses: REFUSAL_LOG_MAX lines a minute in all, bounded memory."""
    now = [0.0]
    app = AgiApplication(allowed_peers=[])
    app._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="ivr.telephony.fastagi"):
        for i in range(3000):
            app._tell_refusal((f"192.168.{i // 256}.{i % 256}", 1), allowed=False)
            now[0] += 0.01  # 3000 addresses in 30 s
        assert len(caplog.records) == REFUSAL_LOG_MAX
        now[0] += REFUSAL_LOG_S
        app._tell_refusal(("10.9.9.9", 1), allowed=False)
        app._tell_refusal(("127.0.0.1", 1), allowed=True)  # a full server: its own line
    assert len(caplog.records) == REFUSAL_LOG_MAX + 2 and len(app._told) <= 1024
    assert "sessions already open" in caplog.records[-1].getMessage()

async def test_a_configured_pbx_is_told_however_busy_the_scan(
        caplog: pytest.LogCaptureFixture) -> None:
    """A scan of 25 new addresses a minute used the whole budget before the real PBX's
    refusal came: the line naming agi.allowed_peers for it never appeared."""
    now = [0.0]
    app = AgiApplication(allowed_peers=["10.0.0.0/8"], pbx_hosts=["198.51.100.7", "pbx.lan"])
    app._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, logger="ivr.telephony.fastagi"):
        for minute in range(3):
            for i in range(25):
                app._tell_refusal((f"203.0.113.{minute * 25 + i}", 1), allowed=False)
            app._tell_refusal(("198.51.100.7", 1), allowed=False)
            app._tell_refusal(("198.51.100.7", 1), allowed=False)  # once a minute still
            now[0] += REFUSAL_LOG_S
    pbx = [r for r in caplog.records if "198.51.100.7" in r.getMessage()]
    assert len(pbx) == 3
    assert len(caplog.records) == 3 * REFUSAL_LOG_MAX + 3


def test_a_closed_connection_is_a_hangup() -> None:
    results, _, _ = typed([], ("wait_for_digit", (100,)), ("stream_file", ("ivr/intro",)))
    assert all(isinstance(r, AgiHangup) for r in results)


RAW_COMMAND = re.compile(
    r"\b(STREAM FILE|GET OPTION|WAIT FOR DIGIT|GET VARIABLE|SET VARIABLE|CHANNEL STATUS|HANGUP)\b")


def test_handlers_speak_agi_only_through_the_typed_methods() -> None:
    """No module of ivr/ that drives FastAGI sessions spells an AGI command or calls
    send_command: fastagi.py alone does."""
    root = Path(__file__).resolve().parents[1] / "ivr"
    handlers = [p for p in root.rglob("*.py") if p.name != "fastagi.py"
                and "ivr.telephony.fastagi" in p.read_text()]
    assert {p.name for p in handlers} >= {"agi_ivr.py", "agi_callback.py"}
    for path in handlers:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not RAW_COMMAND.search(node.value), (path, node.value)
            if isinstance(node, ast.Attribute):
                assert node.attr != "send_command", (path, node.lineno)


async def test_a_flood_of_sessions_for_no_route_is_logged_within_a_budget(
        caplog: pytest.LogCaptureFixture) -> None:
    """Found by a probe: 16,000 'no route' lines in 10 s, each quoting a 16 KB script name,
    from one local user (262 MB of log). Past 20 a minute a line is counted, not written,
    and the next one says how many were left out."""
    from ivr.telephony.fastagi import serve
    from ivr.telephony.log_budget import LINES_PER_WINDOW
    now = [0.0]
    app = AgiApplication()
    app.log_budget.clock = lambda: now[0]
    server = await serve(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def session() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"agi_network_script: " + b"A" * 8000 + b"\n\n")
        await reader.read()  # closed unserved
        writer.close()
    try:
        with caplog.at_level(logging.WARNING, logger="ivr.telephony.fastagi"):
            for _ in range(60):
                await session()
            assert len(caplog.records) == LINES_PER_WINDOW
            now[0] += 60
            await session()
    finally:
        server.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES_PER_WINDOW + 1 and all(len(m) < 300 for m in lines)
    assert lines[-1].endswith("(40 more like it not logged, over 20 a minute)"), lines[-1]
