"""Benchmark: the controller's CPU for the FastAGI part of a call alone, on an unloaded core.

A peer process plays Asterisk's side of FastAGI (headers, then one canned result per command:
a key during the intro, the other prompts played to the end) for N sessions, C at a time,
against the real AgiApplication + IvrHandler + SafeWriter and a WAL store file. No PBX, no
AMI: this is the floor that the FastAGI design costs per call (the session gate of issue 19
included: each session carries its attempt's token and channel id), to read next to the
end-to-end `cpu_ms_per_call` of bench_ivr.py (where Asterisk competes for the same 2 cores).

`--bare` measures the floor under that: a bare asyncio Protocol that reads the headers and sends
the same four commands, with no flow, no store and no checks. It is the cost of the sockets and
the event loop alone, which no FastAGI controller on this machine can go below.

Both run on the controller's event loop (app.run: uvloop).

Prints one JSON object. Usage:
  python3 bench/bench_agi_session.py [--sessions 2000] [--concurrency 200] [--bare]
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ivr import app as controller
from ivr.callflow.agi_gate import SessionGate
from ivr.callflow.agi_ivr import IvrHandler
from ivr.campaign.nodes import InFlight
from ivr.telephony.agi_auth import new_token, token_hash
from ivr.telephony.fastagi import AgiApplication, serve
from ivr.callflow.flow import FlowOptions
from ivr.store.safe_writes import SafeWriter
from ivr.store.sqlite import Store, utc

HEADERS = "".join(f"{k}: {v}\n" for k, v in {
    "agi_network": "yes", "agi_network_script": "ivr", "agi_request": "agi://127.0.0.1/ivr",
    "agi_channel": "Local/+33199000010@ivr-sim-00000001;1", "agi_language": "fr",
    "agi_type": "Local", "agi_uniqueid": "{uid}", "agi_version": "22.0.0",
    "agi_callerid": "+33100000000", "agi_calleridname": "Bench", "agi_callingpres": "0",
    "agi_callingani2": "0", "agi_callington": "0", "agi_callingtns": "0", "agi_dnid": "unknown",
    "agi_rdnis": "unknown", "agi_context": "ivr-outbound", "agi_extension": "s",
    "agi_priority": "4", "agi_enhanced": "0.0", "agi_accountcode": "",
    "agi_threadid": "140000000000", "agi_arg_1": "{call_id}", "agi_arg_2": "",
    "agi_arg_3": "{token}"}.items()) + "\n"

PEER = r'''
import asyncio, sys
port, conc, headers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [line.split(" ") for line in sys.stdin.read().splitlines()]
async def session(i, row):
    call_id, uid, token = row
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(headers.format(i=i, call_id=call_id, uid=uid, token=token).encode())
    n = 0
    while await reader.readline():
        n += 1  # intro: key 1 (49); message, legal, goodbye: played to the end
        writer.write(b"200 result=49 endpos=8000\n" if n == 1 else b"200 result=0 endpos=8000\n")
    writer.close()
async def main():
    gate = asyncio.Semaphore(conc)
    async def one(i, c):
        async with gate:
            await session(i, c)
    await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))
asyncio.run(main())
'''


BARE_COMMANDS = [b'STREAM FILE ivr/intro "0123456789*#"\n', b'STREAM FILE ivr/message "9"\n',
                 b'STREAM FILE ivr/legal "9"\n', b'STREAM FILE ivr/goodbye "9"\n']


class BareSession(asyncio.Protocol):
    """The floor: headers in, four commands out, one per result line; nothing else."""

    def __init__(self, on_done: asyncio.Event, counter: list[int], total: int) -> None:
        self.on_done, self.counter, self.total = on_done, counter, total
        self.buf, self.sent, self.transport = b"", 0, None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.sent == 0:
            if b"\n\n" not in self.buf:
                return
            self.buf = self.buf.partition(b"\n\n")[2]
        else:
            lines = self.buf.count(b"\n")
            if not lines:
                return
            self.buf = self.buf.rpartition(b"\n")[2]
        if self.sent == len(BARE_COMMANDS):
            self.transport.close()  # type: ignore[union-attr]
            return
        self.transport.write(BARE_COMMANDS[self.sent])  # type: ignore[union-attr]
        self.sent += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.counter[0] += 1
        if self.counter[0] == self.total:
            self.on_done.set()


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


Session = tuple[int, str, str]  # call id, channel id (agi_uniqueid), token


async def run_bare(ids: list[Session], concurrency: int, port: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    counter = [0]
    server = await loop.create_server(lambda: BareSession(done, counter, len(ids)),
                                      "127.0.0.1", port, backlog=4096, reuse_address=True)
    result = await _drive_peer(ids, concurrency, port, done)
    server.close()
    return result


async def _drive_peer(ids: list[Session], concurrency: int, port: int,
                      done: asyncio.Event) -> dict[str, float]:
    peer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PEER, str(port), str(concurrency), HEADERS,
        stdin=subprocess.PIPE)
    (u0, s0), t0 = cpu(), asyncio.get_running_loop().time()
    rows = "\n".join(" ".join(map(str, row)) for row in ids)
    peer.stdin.write(rows.encode())  # type: ignore[union-attr]
    peer.stdin.close()  # type: ignore[union-attr]
    await asyncio.wait_for(done.wait(), 600)
    (u1, s1), t1 = cpu(), asyncio.get_running_loop().time()
    await peer.wait()
    n = len(ids)
    return {"sessions": n, "elapsed_s": t1 - t0, "sessions_per_s": n / (t1 - t0),
            "cpu_ms_per_session": (u1 - u0 + s1 - s0) / n * 1000,
            "user_ms": (u1 - u0) / n * 1000, "sys_ms": (s1 - s0) / n * 1000}


async def run(store: Store, ids: list[Session], concurrency: int,
              port: int) -> dict[str, float]:
    writer = SafeWriter(store.transaction)
    # What the dialer would hold: every attempt in flight, by call id.
    flights = {cid: InFlight(cid, uid, "+33199000010", "bench") for cid, uid, _ in ids}
    finished: list[int] = []
    done = asyncio.Event()

    def on_finished(call_id: int) -> None:
        finished.append(call_id)
        if len(finished) == len(ids):
            done.set()
    handler = IvrHandler(store, {"intro": "i", "message": "m", "legal": "l", "goodbye": "g"},
                         FlowOptions(), lambda: datetime.now(timezone.utc),
                         on_finished=on_finished, write=writer.write,
                         gate=SessionGate(store.call, flights, set()))
    app = AgiApplication()
    app.add_route("ivr", handler)
    server = await serve(app, "127.0.0.1", port)
    result = await _drive_peer(ids, concurrency, port, done)
    server.close()
    writer.flush()
    stored = store.one("SELECT COUNT(*) AS n FROM calls WHERE outcome = 'message_played'")
    return {"stored_message_played": stored["n"] if stored else 0, **result}


def _attempt(store: Store, contact: dict, now: datetime) -> Session:
    """An attempt with its token, as planning.claim makes one (only the hash is stored)."""
    token = new_token()
    row = store.create_attempt(contact, "bench", "+33100000000", now, token_hash(token))
    return int(row["id"]), str(row["channel_id"]), token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--port", type=int, default=4611)
    parser.add_argument("--bare", action="store_true",
                        help="the floor: sockets and event loop only, no flow and no store")
    args = parser.parse_args()
    if args.bare:
        bare = [(i, f"bare-{i}", "-") for i in range(args.sessions)]
        result = controller.run(run_bare(bare, args.concurrency, args.port))
        print(json.dumps({"bare": True, **{k: round(v, 3) if isinstance(v, float) else v
                                           for k, v in result.items()}}, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db", optout_key=b"bench", busy_timeout_s=0.5)
        now = datetime.now(timezone.utc)
        store.db.execute("INSERT INTO contacts (number, source, created_at, updated_at) "
                         "VALUES ('+33199000010', 'bench', ?, ?)", (utc(now), utc(now)))
        contact = store.one("SELECT * FROM contacts")
        ids = [_attempt(store, contact, now) for _ in range(args.sessions)]
        gc.freeze()  # as `ivr run` does after start
        result = controller.run(run(store, ids, args.concurrency, args.port))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
