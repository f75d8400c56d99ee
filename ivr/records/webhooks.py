"""Outcome webhooks: each attempt's outcome POSTed as JSON to `webhooks.url`, signed.

The receiver checks `X-IVR-Signature: sha256=<hex>`, the HMAC-SHA256 of the body with the
secret IVR_WEBHOOK_SECRET (environment only, SECRET_MIN bytes at least). `X-IVR-Delivery` names
the call's event: a retried delivery carries the same one and the same bytes, so the receiver
can drop duplicates; a later, different body for the call (an erased call resent, a guessed
orphan replaced) carries it too, and replaces the earlier one. It is ASCII, as HTTP headers
are: `<campaign>:<call_id>`, the campaign's name percent-encoded (`delivery_id`).

The run is never slowed: the dialer only puts the attempt's id into a bounded queue
(`offer`, no wait); workers read the outcome from the store and deliver it, retrying a failing
receiver with exponential backoff. Each attempt is bounded as a whole (timeout_s), and only
the start of the receiver's answer is read. A full queue drops the event, counted and logged;
so does a delivery still failing after its last retry; the ids of the calls not delivered are
logged at the end, with the `ivr webhooks resend` that sends them again (ivr/cli_webhooks.py,
through `send`). Each call is offered once: a reconciliation that settles the same attempt
again does not send it twice. Numbers are masked in every log line.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shlex
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ivr.config import Config
from ivr.config_checks import PLAIN_HTTP_HOSTS
from ivr.records.webhook_body import (DELIVERY_SAFE, ENV, FIELDS, HEADER, SECRET_MIN,
                                      delivery_id, event, mask, secret, sign)
from ivr.store.base import Row
from ivr.store.workers import in_store_thread

# The body, signature and delivery id (webhook_body.py) are this module's public names too.
__all__ = ["DELIVERY_SAFE", "ENV", "FIELDS", "HEADER", "SECRET_MIN", "ReadCall", "Seen", "Stats",
           "Webhooks", "delivery_id", "event", "mask", "one_at_a_time", "reader",
           "resend_command", "running", "secret", "sign"]
log = logging.getLogger(__name__)
QUEUE_SIZE = 10_000   # events waiting for delivery; beyond, new ones are dropped (counted)
WORKERS = 4           # deliveries at once: one slow receiver does not hold every event
RETRIES = 5           # attempts per event after the first
BACKOFF_S = 1.0       # first retry after this, doubling each time ...
BACKOFF_MAX_S = 60.0  # ... up to this
READ_TRIES = 50       # the outcome is read back this many times, READ_WAIT_S apart, at most
READ_WAIT_S = 0.2
CLOSE_GRACE_S = 5.0   # at the run's end, events still queued get this long to go out
BODY_READ_MAX = 64 * 1024  # the receiver's answer is read this far at most, then cut
# A failing receiver fails every outcome: its first failed attempt and its first outcome given
# up are said, then one line of each a minute at most, with the count of those not said.
TELL_EVERY_S = 60.0
IDS_LOGGED = 50       # call ids named per log line of undelivered outcomes; the rest counted
RESEND_IDS = 10       # up to this many lost, the resend command names them; beyond, --since

ReadCall = Callable[[int], Awaitable[Row | None]]


@dataclass
class Stats:
    delivered: int = 0
    dropped: int = 0   # the queue was full, or still queued or retried at the end: never sent
    failed: int = 0    # every retry failed, or the outcome could not be read


@dataclass
class Said:
    """When a kind of failure was last logged, and how many of it were not since."""
    at: float = float("-inf")
    quiet: int = 0


@dataclass
class CallIds:
    """Calls not delivered, named in the log for an operator to resend: the first IDS_LOGGED
    kept, the others counted (a long outage must not grow the memory or the line)."""
    ids: list[int] = field(default_factory=list)
    more: int = 0

    def add(self, call_ids: Iterable[int]) -> None:
        for call_id in call_ids:
            if len(self.ids) < IDS_LOGGED:
                self.ids.append(call_id)
            else:
                self.more += 1

    @property
    def total(self) -> int:
        return len(self.ids) + self.more

    def __str__(self) -> str:
        return ", ".join(map(str, self.ids)) + (f" and {self.more} more" if self.more else "")


class Seen:
    """The call ids offered so far, one bit each in pages of 65,536 ids: a million calls
    take ~128 KiB, where a set would take ~60 MB."""
    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def add(self, n: int) -> bool:
        """True when n was not there yet."""
        page = self._pages.get(n >> 16)
        if page is None:
            page = self._pages[n >> 16] = bytearray(1 << 13)
        at, bit = (n & 0xFFFF) >> 3, 1 << (n & 7)
        if page[at] & bit:
            return False
        page[at] |= bit
        return True


def client(url: str, timeout_s: float,
           transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    """Plain http goes to this machine only (outcomes carry phone numbers): never through a
    proxy of the environment (HTTP_PROXY), which would get them in clear. https keeps it."""
    host = urlsplit(url).hostname or ""
    direct = {f"all://[{host}]" if ":" in host else f"all://{host}": None} \
        if host in PLAIN_HTTP_HOSTS else None
    return httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False,
                             mounts=direct)


class Webhooks:
    def __init__(self, url: str, key: bytes, read_call: ReadCall, *, timeout_s: float = 5.0,
                 queue_size: int = QUEUE_SIZE, workers: int = WORKERS, retries: int = RETRIES,
                 backoff_s: float = BACKOFF_S, sleep: Callable[[float], Awaitable[Any]]
                 = asyncio.sleep, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic, campaign: str | None = None,
                 config: Path | None = None) -> None:
        self.url, self._key, self._read, self._clock = url, key, read_call, clock
        # for the resend command at the end: the calls ended since the run's start, the second
        self.campaign, self.started = campaign, datetime.now(timezone.utc).replace(microsecond=0)
        self.config = config  # named in that command: the receiver and key are this config's
        self._said = {"attempts failed": Said(), "outcomes given up": Said()}
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._sleep = sleep
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=queue_size)
        self.stats = Stats()
        self.dropped_ids, self.failed_ids = CallIds(), CallIds()  # named at close
        self._seen = Seen()
        self._client = client(url, timeout_s, transport)
        self._holding: set[int] = set()  # events a worker holds (taken, not yet done)
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(workers)]
        if workers and campaign is not None:  # a run's: what is queued lives in memory only
            log.info("webhooks: delivering outcomes; if this process is killed, what was queued "
                     "is sent again with: %s", self.resend_command([], RESEND_IDS + 1))

    # -- the dialer's side: never waits, never raises -----------------------------------------
    def offer(self, call_id: int) -> None:
        if not self._seen.add(call_id):  # settled again (a reconciliation): sent once
            return
        try:
            self.queue.put_nowait(call_id)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            self.dropped_ids.add([call_id])
            if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 1000 == 0:
                log.warning("webhooks: queue full (%d events): %d outcome(s) dropped so far",
                            self.queue.maxsize, self.stats.dropped)

    # -- delivery -------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            call_id = await self.queue.get()
            self._holding.add(call_id)
            try:
                await self._deliver(call_id)
            except Exception:  # a bug here must not end the worker
                log.exception("webhooks: call %s not delivered", call_id)
                self._failed(call_id)
            finally:
                self._holding.discard(call_id)
                self.queue.task_done()

    def _failed(self, call_id: int) -> None:
        self.stats.failed += 1
        self.failed_ids.add([call_id])

    async def _deliver(self, call_id: int) -> None:
        call = await self._outcome(call_id)
        if call is None:
            self._failed(call_id)
            log.error("webhooks: the outcome of call %s could not be read: not delivered",
                      call_id)
            return
        if await self.send(call) is None:
            self.stats.delivered += 1
            return
        self._failed(call_id)
        self._tell("outcomes given up", logging.ERROR,
                   "call %s (%s): given up after %d attempts", call_id,
                   mask(call.get("number")), self.retries + 1)

    def signed(self, call: Row) -> tuple[bytes, dict[str, str]]:
        """The call's body and headers: the signature, the delivery id a retry repeats."""
        body = json.dumps(event(call), ensure_ascii=False, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json", HEADER: sign(self._key, body),
                      "X-IVR-Delivery": delivery_id(str(call["campaign"]), int(call["id"]))}

    async def send(self, call: Row) -> str | None:
        """POST one outcome, retried with backoff: None once delivered, else the last attempt's
        problem. Each retry reads the row again and signs it anew: a person erased between two
        attempts (`ivr gdpr erase`) had the number sent again, the body being built once."""
        call_id, row, shown = int(call["id"]), call, call
        problem: str | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                wait = min(self.backoff_s * 2 ** (attempt - 1), BACKOFF_MAX_S)
                self._tell("attempts failed", logging.WARNING,
                           "call %s (%s): %s; retry in %g s", call_id,
                           mask(shown.get("number")), problem, wait)
                await self._sleep(wait)
                row = await self._read_once(call_id)
            if row is None:  # never the old body: it may hold what an erasure removed
                problem = "its row could not be read again"
                continue
            shown = row
            problem = await self._post(*self.signed(row))
            if problem is None:
                return None
        return problem

    async def _read_once(self, call_id: int) -> Row | None:
        try:
            return await self._read(call_id)
        except Exception as exc:  # the store away: None, read again later
            log.debug("webhooks: call %s unreadable: %s", call_id, exc)
            return None

    def _tell(self, kind: str, level: int, text: str, *args: Any) -> None:
        """The first failure of its kind, then one a minute with how many were not said:
        a dead receiver wrote six lines per call (five retries, the giving up), ~1,200 for
        200 calls. The ids of the outcomes given up are named at the end (_name_lost)."""
        said, now = self._said[kind], self._clock()
        if now - said.at < TELL_EVERY_S:
            said.quiet += 1
            return
        more = (f" ({said.quiet} more {kind} in the last {now - said.at:.0f} s; said once a "
                "minute)") if said.quiet else ""
        said.at, said.quiet = now, 0
        log.log(level, "webhooks: " + text + more, *args)

    async def _post(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None when the receiver took it (2xx), else what went wrong. The whole attempt is
        bounded by timeout_s (httpx's bounds each read: a receiver trickling a byte at a time
        held a worker for ever); any failure is one failed attempt, retried. Once a 2xx
        status is in, the event is delivered: a body slow to follow is only cut."""
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._client.stream("POST", self.url, content=body,
                                               headers=headers) as resp:
                    status = resp.status_code
                    await skim(resp)
        except TimeoutError:
            if status is None:
                return f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # its text may hold the URL's query: only its kind logged
            if status is None:
                return failure(exc)
        return None if status is not None and 200 <= status < 300 else f"HTTP {status}"

    async def _outcome(self, call_id: int) -> Row | None:
        """The attempt once its outcome is in the store (written in the loop's next turn, or
        later while the store is away). A controller's guess on another's call (`error`, stage
        `orphaned`: it judged that one dead, maybe while its writes were only slow) is not sent
        while the placing controller's own result may still replace it (store/sqlite_calls
        finish_answered), whichever controller sends it; if none does within the reads, the
        guess is the outcome."""
        guess = None
        for _ in range(READ_TRIES):
            call = await self._read_once(call_id)
            if call is not None and call.get("outcome") is not None:
                if not (call["outcome"] == "error" and call.get("stage") == "orphaned"):
                    return call
                guess = call
            await self._sleep(READ_WAIT_S)
        return guess

    # -- the end --------------------------------------------------------------------------------
    async def close(self, grace_s: float = CLOSE_GRACE_S) -> Stats:
        """Let queued events go out for grace_s at most, then stop; what is left is counted as
        dropped and said."""
        try:
            await asyncio.wait_for(self.queue.join(), grace_s)
        except asyncio.TimeoutError:
            pass
        left = sorted(self._holding)  # being sent or waiting for a retry
        while not self.queue.empty():
            left.append(self.queue.get_nowait())
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._client.aclose()
        self.stats.dropped += len(left)
        if left or self.stats.dropped or self.stats.failed:
            log.warning("webhooks: %d delivered, %d dropped, %d failed", self.stats.delivered,
                        self.stats.dropped, self.stats.failed)
        self._name_lost(left)
        return self.stats

    def _name_lost(self, left: list[int]) -> None:
        """The calls the receiver never got, by id (never a number); the command resending them."""
        at_stop = CallIds()
        at_stop.add(left)
        kinds = ((self.dropped_ids, "dropped, the queue full"),
                 (at_stop, "still queued or retried at the stop"),
                 (self.failed_ids, "failed after every retry, or unreadable"))
        for ids, why in kinds:
            if ids.total:
                log.warning("webhooks: %d outcome(s) not delivered (%s): call ids %s",
                            ids.total, why, ids)
        total = sum(ids.total for ids, _ in kinds)
        if total:
            lost = sorted({i for ids, _ in kinds for i in ids.ids})
            log.warning("webhooks: resend them with: %s", self.resend_command(lost, total))

    def resend_command(self, lost: list[int], total: int) -> str:
        """`ivr webhooks resend` naming the few calls lost, else the calls ended since the run's
        start (those delivered too: the receiver drops them by X-IVR-Delivery)."""
        return resend_command(self.config, self.campaign, lost,  # all named, or none
                              since=self.started if total > RESEND_IDS else None)


def resend_command(config: Path | None, campaign: str | None, ids: Iterable[int],
                   since: datetime | None = None) -> str:
    """The `ivr webhooks resend` line: its config, its campaign, these calls or (`since`)
    the calls ended since then."""
    which = ["--since", since.strftime("%Y-%m-%dT%H:%M:%SZ")] if since is not None else \
        [w for i in ids for w in ("--call-id", str(i))]
    where = ["--campaign", campaign] if campaign is not None else []
    at = ["--config", str(config)] if config is not None else []
    return shlex.join(["ivr", *at, "webhooks", "resend", *where, *which])


def one_at_a_time(cfg: Config, key: bytes, read: ReadCall) -> Webhooks:
    """A sender for calls sent in turn by a command (`ivr webhooks resend`, an erasure's
    notice): no workers, the run's timeout and retries."""
    return Webhooks(cfg.webhooks.url, key, read, timeout_s=cfg.webhooks.timeout_s,
                    workers=0, retries=RETRIES, backoff_s=BACKOFF_S)


def failure(exc: BaseException) -> str:
    """A failed attempt as logged: the exception's kind, never its text (it may quote the URL);
    a certificate not trusted is said as such (httpx's ConnectError alone hid it)."""
    seen: BaseException | None = exc
    for _ in range(10):  # httpx -> httpcore -> ssl: a short chain, a cycle never followed
        if isinstance(seen, ssl.SSLCertVerificationError):
            return "TLS certificate not trusted"
        seen = seen and (seen.__cause__ or seen.__context__)
    return type(exc).__name__


async def skim(resp: httpx.Response) -> None:
    """Read the start of the answer only: a short one leaves the connection reusable, a long
    one is cut (its status is all that counts; a 400 MiB body was read into memory)."""
    got = 0
    if resp.is_stream_consumed:  # a transport that read it already (httpx.MockTransport)
        return
    async with aclosing(resp.aiter_raw()) as chunks:
        async for chunk in chunks:
            got += len(chunk)
            if got > BODY_READ_MAX:
                break


def reader(store: Any) -> ReadCall:
    """store.call, off the event loop on a remote store (PostgreSQL)."""
    async def read(call_id: int) -> Row | None:
        if getattr(store, "remote", False):
            return await in_store_thread(store.call, call_id)
        return store.call(call_id)  # type: ignore[no-any-return]
    return read


@asynccontextmanager
async def running(cfg: Config, store: Any) -> AsyncIterator[Webhooks | None]:
    """The run's webhooks (None when webhooks.url is not set): the dialer offers them each
    settled attempt; on exit, what is queued gets CLOSE_GRACE_S to go out. Entered before the
    PBX is touched, so a missing secret refuses the run at once."""
    key = secret(cfg)
    if key is None:
        yield None
        return
    hooks = Webhooks(cfg.webhooks.url, key, reader(store), timeout_s=cfg.webhooks.timeout_s,
                     campaign=cfg.campaign.name, config=cfg.source[0] if cfg.source else None)
    try:
        yield hooks
    finally:
        await hooks.close()
