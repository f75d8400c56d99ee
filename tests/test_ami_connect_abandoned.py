"""A connect that gave up leaves nothing behind: no task, no socket, no AMI session.

The PBX's accept queue is full (booting, swamped): our SYNs are dropped and the kernel retries
them (~1 s, 3 s after the first). Ami.connect times out and closes the Ami meanwhile; when the
queue drains, a retried SYN used to get through and the closed Ami logged in, events on, and
queued every event into a queue nobody reads, for the rest of the run. The same for a
reconnect (after a lost link) still pending when the Ami is closed.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator

import pytest
from panoramisk.ami_protocol import AMIProtocol

from ivr.errors import PbxError
from ivr.telephony.ami import Ami

SETTLE_S = 2.5  # past the kernel's first SYN retry (1 s): a surviving connect logs in by then


class Listener:
    """An AMI port whose accepting we control. While it does not accept and `fill()` queued a
    connection, its accept queue is full and a client's SYN is dropped, then retried."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)  # room for one queued connection
        self.port = self.sock.getsockname()[1]
        self.logins = 0
        self.received: list[bytes] = []  # what each accepted connection sent
        self._socks: list[socket.socket] = []  # the fillers
        self._conns: list[socket.socket] = []  # the accepted connections
        self._tasks: set[asyncio.Task] = set()

    def fill(self) -> None:
        for _ in range(2):  # nobody accepts them: later SYNs to the port are dropped
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._socks.append(filler)

    def answer(self, count: int = 10**6) -> None:
        """Accept (and serve) the next `count` connections."""
        self._spawn(self._accept(count))

    def drop(self) -> None:
        """Close every served connection (the link to the client is lost)."""
        for task in list(self._tasks):
            task.cancel()
        for conn in self._conns:
            conn.close()

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            conn, _ = await loop.sock_accept(self.sock)
            self._conns.append(conn)
            self._spawn(self._serve(conn))

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._talk(conn)
        except OSError:  # reset by the client: closed as well
            pass

    async def _talk(self, conn: socket.socket) -> None:
        """Asterisk's side: banner, the Login's reply, then a stream of other calls' events."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(conn, b"Asterisk Call Manager/5.0.0\r\n")
        buf = b""
        self.received.append(buf)
        while b"\r\n\r\n" not in buf:
            data = await loop.sock_recv(conn, 4096)
            if not data:
                return  # closed without a word (a filler, or a link closed before Login)
            buf += data
            self.received[-1] = buf
        action_id = re.search(rb"ActionID: (\S+)", buf, re.I)
        if b"Action: Login" not in buf or action_id is None:
            return
        self.logins += 1
        await loop.sock_sendall(conn, b"Response: Success\r\nActionID: " + action_id.group(1)
                                + b"\r\nMessage: Authentication accepted\r\n\r\n")
        for i in range(10**6):
            await loop.sock_sendall(conn, b"Event: Hangup\r\nUniqueid: 17000.%d\r\n"
                                    b"Cause: 16\r\n\r\n" % i)
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.drop()
        for sock in self._socks:
            sock.close()
        self.sock.close()


@pytest.fixture
async def pbx() -> AsyncIterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


async def logins_after(pbx: Listener, seconds: float, above: int) -> int:
    """The server's login count once it passed `above` or `seconds` ran out."""
    async with asyncio.timeout(seconds + 1):
        for _ in range(int(seconds / 0.05)):
            if pbx.logins > above:
                break
            await asyncio.sleep(0.05)
    return pbx.logins


def left_behind(ami: Ami) -> tuple[object, int]:
    """Its protocol, and the events it queued besides close()'s end marker."""
    return ami._mgr.protocol, ami._events.qsize() - 1


async def test_a_connect_that_timed_out_never_logs_in_when_the_pbx_answers_later(
        pbx: Listener) -> None:
    pbx.fill()
    ami = Ami("127.0.0.1", pbx.port, "ivr", "s3cret", reconnect_s=0.2)
    with pytest.raises(PbxError, match="cannot reach AMI"):
        await ami.connect(timeout=0.3)  # our SYN is still being retried by the kernel
    pbx.answer()  # the queue drains: a retried SYN would now get through
    assert await logins_after(pbx, SETTLE_S, above=0) == 0
    assert left_behind(ami) == (None, 0)
    assert all(b"Login" not in data for data in pbx.received)
    live = Ami("127.0.0.1", pbx.port, "ivr", "s3cret")  # the port does answer now
    await live.connect(timeout=3)
    assert pbx.logins == 1
    live.close()


async def test_a_reconnect_pending_at_close_never_logs_in(pbx: Listener) -> None:
    pbx.answer(count=1)
    ami = Ami("127.0.0.1", pbx.port, "ivr", "s3cret", reconnect_s=0.1)
    await ami.connect(timeout=3)
    pbx.fill()
    pbx.drop()  # the link is lost: panoramisk reconnects in 0.1 s, its SYN is dropped
    await asyncio.sleep(0.4)
    ami.close()
    queued = ami._events.qsize()  # the first link's events, up to the drop
    pbx.answer()
    assert await logins_after(pbx, SETTLE_S, above=1) == 1
    assert ami._events.qsize() == queued
    assert ami._mgr.protocol is None or ami._mgr.protocol.closed


async def test_a_link_made_after_close_is_closed_without_a_login(
        pbx: Listener, caplog: pytest.LogCaptureFixture) -> None:
    """The TCP connect finished just as close() ran: its callback closes the new link."""
    pbx.answer()
    ami = Ami("127.0.0.1", pbx.port, "ivr", "s3cret")
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(AMIProtocol, "127.0.0.1", pbx.port)
    made: asyncio.Future = loop.create_future()
    made.set_result((transport, protocol))
    ami.close()
    with caplog.at_level(logging.ERROR):
        ami._mgr.connection_made(made)
        await asyncio.sleep(0.3)
    assert transport.is_closing() and ami._mgr.protocol is None
    assert pbx.logins == 0 and pbx.received == [b""]  # the server saw it close, no Login
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
