"""report.csv's pipe (ivr/web/download.py): kept blocks pass without room, so the producer goes
on to render the changed blocks while the response still sends the kept ones; only fresh chunks
are bounded; order is kept; the response reads on its event loop (aget) with no thread hop."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from ivr.web import download


def _kept(n: int) -> list[bytes]:
    return [bytes([65 + i]) * (download.Pipe.CHUNK + i) for i in range(n)]


def _within(timeout_s: float, cond: Callable[[], bool]) -> bool:
    """Whether `cond` comes true within `timeout_s` (polled)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _read(pipe: download.Pipe, n: int) -> list[object]:
    """n items read as the response reads them (aget), on a loop of their own."""
    async def read() -> list[object]:
        return [await asyncio.wait_for(pipe.aget(), 5) for _ in range(n)]
    return asyncio.run(read())


def _holds(for_s: float, cond: Callable[[], bool]) -> bool:
    """Whether `cond` stays true for `for_s` (polled): a thread that should be blocked is."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if not cond():
            return False
        time.sleep(0.01)
    return cond()


def test_kept_blocks_need_no_room_and_come_out_in_order() -> None:
    kept = _kept(download.Pipe.ROOM * 3)
    pipe = download.Pipe(kept)
    done = threading.Event()

    def produce() -> None:
        for k in kept:  # more kept blocks than ROOM, nobody reading
            pipe.write(k)
        pipe.write(b"fresh,")  # buffered (under CHUNK) until the next kept block
        pipe.write(kept[0])
        pipe.flush()
        done.set()
    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(5)  # never waited for room
    got = _read(pipe, len(kept) + 2)
    assert got[:len(kept)] == kept and all(a is b for a, b in zip(got, kept))
    assert got[len(kept):] == [b"fresh,", kept[0]]


def test_fresh_chunks_still_wait_for_room() -> None:
    """A copy of a kept block is fresh: the room bounds it (memory stays bounded)."""
    kept = _kept(1)
    pipe = download.Pipe(kept)
    wrote = []

    def produce() -> None:
        try:
            for _ in range(download.Pipe.ROOM + 3):
                pipe.write(bytes(bytearray(kept[0])))  # equal bytes, another object
                wrote.append(1)
        except download.Gone:
            pass
    t = threading.Thread(target=produce, daemon=True)
    t.start()
    room = download.Pipe.ROOM
    # polled, not a fixed join: a loaded machine may take its time to fill the room
    assert _within(5, lambda: len(wrote) >= room)
    assert _holds(0.5, lambda: len(wrote) == room and t.is_alive())  # blocked: no room
    assert _read(pipe, 1) == [kept[0]]  # one taken: room for one more
    assert _within(5, lambda: len(wrote) >= room + 1)
    assert _holds(0.5, lambda: len(wrote) == room + 1 and t.is_alive())
    pipe.close()
    t.join(5)
    assert not t.is_alive() and len(wrote) == room + 1  # released by Gone, nothing more


def test_aget_reads_on_the_loop_and_wakes_when_a_chunk_arrives() -> None:
    pipe = download.Pipe()
    n = download.Pipe.ROOM * 4  # past the room: each aget gives room back

    def produce() -> None:
        for i in range(n):
            pipe.write(bytes([i]) * download.Pipe.CHUNK)
        pipe.put(None, fresh=False)

    async def read() -> list[bytes]:
        t = threading.Timer(0.2, produce)  # the reader sleeps first: it must be woken
        t.start()
        out = []
        while (item := await asyncio.wait_for(pipe.aget(), 5)) is not None:
            out.append(item)
        return out
    got = asyncio.run(read())
    assert got == [bytes([i]) * download.Pipe.CHUNK for i in range(n)]


def test_a_producer_left_without_room_is_released_by_close() -> None:
    pipe = download.Pipe()
    for _ in range(download.Pipe.ROOM):
        pipe.put(b"x")
    released = threading.Event()

    def produce() -> None:
        try:
            pipe.put(b"y")
        except download.Gone:
            released.set()
    threading.Thread(target=produce, daemon=True).start()
    assert not released.wait(0.3)
    pipe.close()
    assert released.wait(5) and pipe.q.empty()
