"""The one place that speaks AGI: a FastAGI server on panoramisk's fast_agi, defects wrapped.

panoramisk 1.4 defects handled here (subclasses, not a copy):
- `add_route` wraps a sync endpoint with `asyncio.coroutine`, gone in Python 3.11.
- the header loop `while b'\\n\\n' not in buffer` spins forever on a connection closed before
  the headers (read() returns b''); it also has no size or time bound. We read headers with a
  deadline and a size cap, and close on EOF.
- a `HANGUP` line (sent when AGISIGHUP is not `no`) is read as the result of the next command,
  shifting every later result by one. We skip it and remember that the callee hung up.
- after a 520 error it reads only one line of the multi-line usage text, so the rest is read as
  the next results. We read up to the `520 End of proper usage.` line.
Also: only configured peers may connect, and the number of open connections is capped; a
refused connection is logged (rate-limited), since Asterisk reports it as AGISTATUS=SUCCESS.

Handlers speak AGI only through AgiRequest's typed methods (stream_file, get_option,
wait_for_digit, get_variable, set_variable, channel_status, hangup): the command strings, the
quoting of their arguments and the reading of their results live here and nowhere else.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from panoramisk.fast_agi import Application, Request
from panoramisk.utils import parse_agi_result

from ivr.telephony.agi_peers import addresses, networks, peer_allowed
from ivr.telephony.log_budget import LogBudget

log = logging.getLogger(__name__)

HEADER_LIMIT = 16 * 1024  # bytes a line may hold, headers and replies alike
# Headers Asterisk sends at the start of every session, whatever the dialplan (the dialplan's
# own names, its arguments included, are in contract.py)
HEADER_UNIQUEID = "agi_uniqueid"  # the channel running the AGI (the Originate's ChannelId)
HEADER_CALLERID = "agi_callerid"  # the caller's number: the callback route keys on it
# Lines one command's reply may span: the result, "100 Trying" lines, HANGUP notices and a
# usage text (Asterisk's longest is a few dozen lines). A peer sending more is not Asterisk:
# unbounded, a usage text that never ends grew the controller by ~450 MB a second.
REPLY_LINES_MAX = 100
CHANNEL_UP = 6  # CHANNEL STATUS: "Line is up"
DEAD_CHANNEL = 511  # "Command Not Permitted on a dead channel or intercept routine"
_DIGITS = re.compile(r"[0-9*#]*")
_BARE_ARG = re.compile(r"[A-Za-z0-9_./:+-]+")  # sent as is; anything else is quoted


class AgiHangup(Exception):
    """The channel is gone: the callee hung up or Asterisk closed the AGI."""


class AgiCommandError(Exception):
    """Asterisk refused the command itself (510 unknown, 520 usage): a bug, not a hangup."""


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What STREAM FILE did. `failed` (result=-1) is a hangup or a file Asterisk cannot play:
    CHANNEL STATUS tells them apart."""
    digit: str | None = None  # the escape digit that stopped the playback
    endpos: int = 0           # samples streamed (8 kHz)
    failed: bool = False

    @property
    def played_nothing(self) -> bool:
        """Ended at sample 0 with no key: a missing or empty file (Asterisk says result=0)."""
        return not self.failed and self.digit is None and self.endpos == 0


def _played(result: dict[str, Any]) -> StreamResult:
    code = _code(result)
    if code < 0:
        return StreamResult(failed=True)
    endpos = int(result.get("endpos", ("0",))[0] or 0)
    return StreamResult(digit=chr(code) if code > 0 else None, endpos=endpos)


def quote(arg: str) -> str:
    """One AGI argument: Asterisk splits on spaces, honours double quotes and backslashes."""
    if _BARE_ARG.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digits(escape_digits: str) -> str:
    if not _DIGITS.fullmatch(escape_digits):
        raise ValueError(f"escape digits must be 0-9, * or #, not {escape_digits!r}")
    return f'"{escape_digits}"'


def _code(result: dict[str, Any]) -> int:
    """The numeric result=, checked: a dead channel is a hangup, a refused command a bug.
    -1 (failure or hangup, panoramisk's AGIAppError) is returned for the caller to read."""
    error = result.get("error")
    if error in ("AGIAppError", "AGIResultHangup"):
        return -1
    if result.get("status_code") == DEAD_CHANNEL:
        raise AgiHangup("the channel is gone (511)")
    if error is not None:
        raise AgiCommandError(f"{error}: {result.get('msg', '')}".strip())
    try:
        return int(result["result"][0] or 0)
    except (KeyError, ValueError):
        raise AgiCommandError(f"unreadable AGI result {result!r}") from None


class AgiRequest(Request):  # type: ignore[misc]
    def __init__(self, *args: Any, read_timeout: float = 600.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hung_up = False
        self.lost = False  # the AGI connection itself died (PBX crash, network), not a hangup
        self._reply_lines = 0  # lines read of the current command's reply
        self.read_timeout = read_timeout
        # One watchdog per session, not a timer per line: a read waiting longer than
        # read_timeout means a dead peer (half-open TCP); the connection is aborted.
        self._loop = asyncio.get_running_loop()
        self._reading_since: float | None = None
        self._timed_out = False
        self._watchdog = self._loop.call_later(read_timeout, self._watch)

    def _watch(self) -> None:
        since = self._reading_since
        if since is not None and self._loop.time() - since >= self.read_timeout:
            self._timed_out = True
            self.writer.transport.abort()
            return
        due = (since if since is not None else self._loop.time()) + self.read_timeout
        self._watchdog = self._loop.call_at(due, self._watch)

    def close_watchdog(self) -> None:
        self._watchdog.cancel()

    async def _readline(self) -> str:
        self._reading_since = self._loop.time()
        try:
            raw = await self.reader.readline()
        except ConnectionError as exc:
            self.lost = True
            raise AgiHangup(f"AGI read failed: {exc!r}") from None
        finally:
            self._reading_since = None
        if not raw:
            self.lost = True
            reason = f"no reply within {self.read_timeout:g} s" if self._timed_out else "closed"
            raise AgiHangup(f"AGI connection {reason}")
        return raw.decode(self.encoding, "replace").rstrip("\r\n")

    async def _reply_line(self) -> str:
        """A line of the current command's reply, at most REPLY_LINES_MAX of them: past that
        the connection is cut as a dead peer's would be (the session ends as a hangup)."""
        self._reply_lines += 1
        if self._reply_lines > REPLY_LINES_MAX:
            self.lost = True
            self.writer.transport.abort()
            raise AgiHangup(f"AGI reply longer than {REPLY_LINES_MAX} lines: not Asterisk's, "
                            "connection closed")
        return await self._readline()

    async def _read_result(self) -> dict[str, Any]:
        line = await self._reply_line()
        while line == "HANGUP":  # out-of-band notice, not a result
            self.hung_up = True
            line = await self._reply_line()
        return parse_result(line)

    async def send_command(self, command: str) -> dict[str, Any]:
        if "\n" in command or "\r" in command:
            raise ValueError("an AGI command must be one line")
        try:
            self.writer.write((command + "\n").encode(self.encoding))
            await self.writer.drain()
        except ConnectionError as exc:
            self.lost = True
            raise AgiHangup(f"AGI write failed: {exc!r}") from None
        self._reply_lines = 0
        result = await self._read_result()
        while result.get("status_code") == 100:
            result = await self._read_result()
        if result.get("error") == "AGIUsageError":
            usage = []
            while True:
                line = await self._reply_line()
                if line.startswith("520 "):
                    break
                usage.append(line)
            result["msg"] += "\n" + "\n".join(usage)
        return result

    # -- typed commands: the only way handlers speak AGI -----------------------------------
    async def stream_file(self, path: str, escape_digits: str = "") -> StreamResult:
        """Play a sound (path without extension); a key in escape_digits stops it."""
        return _played(await self.send_command(
            f"STREAM FILE {quote(path)} {_digits(escape_digits)}"))

    async def get_option(self, path: str, escape_digits: str, timeout_ms: int) -> StreamResult:
        """Play a sound, then keep listening timeout_ms for one of escape_digits, in ONE
        command. res_agi reads and drops a channel's frames while it waits for the next
        command, so a key pressed between STREAM FILE and WAIT FOR DIGIT is lost: the person
        who answers just as the question ends, and the more so the busier the controller.
        endpos is the sound's length (8 kHz samples) once it played to its end, so a key
        with endpos short of it cut the sound. A hangup while listening reads as result=0
        (res_agi keeps only escape digits, and -1 is none): the next command tells."""
        return _played(await self.send_command(
            f"GET OPTION {quote(path)} {_digits(escape_digits)} {int(timeout_ms)}"))

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """The key pressed within timeout_ms (-1: forever), None on timeout; a hangup raises
        AgiHangup."""
        code = _code(await self.send_command(f"WAIT FOR DIGIT {int(timeout_ms)}"))
        if code < 0:
            raise AgiHangup("WAIT FOR DIGIT failed: the channel hung up")
        return chr(code) if code > 0 else None

    async def get_variable(self, name: str) -> str | None:
        """A channel variable or function (readable on a dead channel), None when unset."""
        result = await self.send_command(f"GET VARIABLE {quote(name)}")
        return result["result"][1] if _code(result) == 1 else None

    async def channel_status(self) -> int | None:
        """The channel's state (CHANNEL_UP: answered), None when there is no channel."""
        code = _code(await self.send_command("CHANNEL STATUS"))
        return None if code < 0 else code

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable the dialplan reads once the AGI returns."""
        _code(await self.send_command(f"SET VARIABLE {quote(name)} {quote(value)}"))

    async def hangup(self) -> None:
        """Hang the channel up; one already gone is not an error."""
        _code(await self.send_command("HANGUP"))


# What STREAM FILE, GET OPTION and WAIT FOR DIGIT answer on every call; anything else goes to
# panoramisk.
_PLAIN_RESULT = re.compile(r"200 result=(-?\d+)(?: endpos=(\d+))?")
_APP_ERROR = {"error": "AGIAppError", "msg": "Error executing application, or hangup"}


def parse_result(line: str) -> dict[str, Any]:
    """panoramisk's parse_agi_result, with a fast path for the plain results of the call flow
    (its generic parser is a tenth of the controller's CPU per call)."""
    m = _PLAIN_RESULT.fullmatch(line)
    if m is None:
        return parse_agi_result(line)  # type: ignore[no-any-return]
    value, endpos = m.groups()
    if value == "-1":
        return dict(_APP_ERROR)
    result: dict[str, Any] = {"status_code": 200, "result": (value, ""), "msg": ""}
    if endpos is not None:
        result["endpos"] = (endpos, "")
    return result


Handler = Callable[[AgiRequest], Awaitable[None]]
REFUSAL_LOG_S = 60.0  # a refused peer is logged once per this many seconds per address,
REFUSAL_LOG_MAX = 20  # and no more than this many refusal lines in all per such window


class AgiApplication(Application):  # type: ignore[misc]
    def __init__(self, *, allowed_peers: Iterable[str] = ("127.0.0.1",),
                 header_timeout: float = 5.0, max_connections: int = 2000,
                 read_timeout: float = 600.0, pbx_hosts: Iterable[str] = ()) -> None:
        super().__init__()
        self.allowed = networks(allowed_peers)
        # The configured nodes' addresses: their refusals are always told (once a minute
        # each), however many other addresses a scan brings (those share REFUSAL_LOG_MAX).
        self.pbx_hosts = addresses(pbx_hosts)
        self.header_timeout = header_timeout
        self.read_timeout = read_timeout
        self.slots = asyncio.Semaphore(max_connections)
        self.active = 0
        self.refused = 0
        self.in_route: dict[str, int] = {}  # sessions inside each route's handler
        self._peers: dict[str, bool] = {}  # verdict per address: parsing one costs ~30 µs
        self._told: dict[str, float] = {}  # when each refusal was last logged (rate limit)
        self._window = (float("-inf"), 0)  # (start, lines logged): the cap over all addresses
        self._clock: Callable[[], float] = time.monotonic
        self.log_budget = LogBudget()  # the lines any local process can make us write

    def add_route(self, path: str, endpoint: Callable[..., Any]) -> None:
        """Sync functions, coroutine functions and objects with an async __call__ all work."""
        async def route(request: AgiRequest) -> None:
            result = endpoint(request)
            if inspect.isawaitable(result):
                await result
        self._route[path] = route

    async def drain(self, path: str, timeout_s: float,
                    interrupt: asyncio.Event | None = None) -> int:
        """Wait, at most timeout_s and until `interrupt` is set, until no session is inside
        route `path` (e.g. a caller on the opposition line when a run ends); the number still
        inside then."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.in_route.get(path, 0) and asyncio.get_running_loop().time() < deadline \
                and not (interrupt is not None and interrupt.is_set()):
            await asyncio.sleep(0.1)
        return self.in_route.get(path, 0)

    def _peer_allowed(self, peer: Any) -> bool:
        host = peer[0] if peer else None
        verdict = self._peers.get(host) if isinstance(host, str) else None
        if verdict is None:
            verdict = peer_allowed(peer, self.allowed)
            if isinstance(host, str):
                if len(self._peers) >= 1024:  # a scan from many addresses must not grow it
                    self._peers.clear()
                self._peers[host] = verdict
        return verdict

    def _tell_refusal(self, peer: Any, allowed: bool) -> None:
        """A refused connection, at WARNING (Asterisk takes it as a finished AGI, so nothing
        else tells the admin): once a minute per address (one for a full server) and
        REFUSAL_LOG_MAX lines a minute in all, so that a flood cannot fill the log."""
        host = str(peer[0]) if peer else "an unknown address"
        key = host if not allowed else "(full)"
        now = self._clock()
        if now - self._told.get(key, -REFUSAL_LOG_S) < REFUSAL_LOG_S:
            return
        if key not in self.pbx_hosts:
            start, lines = self._window
            if now - start >= REFUSAL_LOG_S:
                start, lines = now, 0
            if lines >= REFUSAL_LOG_MAX:
                return  # still counted in self.refused
            self._window = (start, lines + 1)
        if len(self._told) >= 1024:  # a scan from many addresses must not grow it
            self._told.clear()
        self._told[key] = now
        if not allowed:
            log.warning("FastAGI: connection from %s refused: not in agi.allowed_peers (%s); "
                        "if it is your PBX, add its address to agi.allowed_peers in the config "
                        "and restart the controller (logged once a minute per address)",
                        host, ", ".join(str(n) for n in self.allowed) or "empty")
        else:
            log.warning("FastAGI: connection from %s refused: %d sessions already open, the "
                        "limit (logged once a minute)", host, self.active)

    async def _headers(self, reader: asyncio.StreamReader) -> OrderedDict[str, str] | None:
        try:
            async with asyncio.timeout(self.header_timeout):  # no extra Task, unlike wait_for
                raw = await reader.readuntil(b"\n\n")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            return None
        # Asterisk ends each line with "\n" alone: str.splitlines would also split on U+2028,
        # \x0c or \x1c inside a value, and a caller's SIP display name (agi_calleridname, free
        # text) could then add an agi_callerid line of its own. The first of a key stands.
        headers: OrderedDict[str, str] = OrderedDict()
        for line in raw.decode(self.default_encoding, "replace").split("\n"):
            line = line.rstrip("\r")
            key, sep, value = line.partition(": ")
            if sep and key not in headers:
                headers[key] = value
        return headers

    async def handler(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        allowed = self._peer_allowed(peer)
        if not allowed or self.slots.locked():
            self.refused += 1
            self._tell_refusal(peer, allowed)
            writer.close()
            return
        async with self.slots:
            self.active += 1
            try:
                await self._serve(reader, writer, peer)
            finally:
                self.active -= 1
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: Any) -> None:
        headers = await self._headers(reader)
        if headers is None:
            log.debug("FastAGI peer %r sent no complete headers; closed", peer)
            return
        script = headers.get("agi_network_script", "")
        route = self._route.get(script.split("?")[0])
        if route is None:
            if (more := self.log_budget.take("no-route")) is not None:
                log.warning("FastAGI: no route for %r%s", script[:80], more)
            return
        request = AgiRequest(app=self, headers=headers, reader=reader, writer=writer,
                             encoding=self.default_encoding, read_timeout=self.read_timeout)
        path = script.split("?")[0]
        self.in_route[path] = self.in_route.get(path, 0) + 1
        try:
            await route(request)
        except AgiHangup:
            pass
        except Exception:  # one bad call must not take the server down; it is logged, not lost
            log.exception("FastAGI handler %r failed", script)
        finally:
            self.in_route[path] -= 1
            request.close_watchdog()


async def serve(app: AgiApplication, host: str, port: int) -> asyncio.AbstractServer:
    return await asyncio.start_server(app.handler, host, port, limit=HEADER_LIMIT,
                                      reuse_address=True, backlog=4096)
