"""report.csv's pipe (ivr/web/download.py): kept blocks pass without room, so the producer goes
on to render the changed blocks while the response still sends the kept ones; only fresh chunks
are bounded; order is kept; the response reads on its event loop (aget) with no thread hop."""
from __future__ import annotations

import asyncio
import threading

from ivr.web import download


def _kept(n: int) -> list[bytes]:
    return [bytes([65 + i]) * (download.Pipe.CHUNK + i) for i in range(n)]


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
    got = [pipe.get() for _ in range(len(kept) + 2)]
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
    t.join(0.5)
    assert len(wrote) == download.Pipe.ROOM and t.is_alive()
    assert pipe.get() == kept[0]  # one taken: room for one more
    t.join(0.5)
    assert len(wrote) == download.Pipe.ROOM + 1
    pipe.close()
    t.join(5)
    assert not t.is_alive()


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
