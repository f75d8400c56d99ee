"""Outcome webhooks (ivr/records/webhooks.py) against a real HTTP server on loopback: signed
JSON per outcome, a failing receiver retried with backoff, a bounded queue that never makes the
dialer wait (drops counted and logged), and a whole run on the fake PBX delivering each
outcome through the composition root, on both backends (conftest.backend)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ivr import app, config
from ivr.errors import ConfigError
from ivr.records import privacy, webhooks
from ivr.store.base import ERASED_NUMBER
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer, failed

from conftest import Backend
from test_dialer import HASHES, SECRET, add_contacts, fiction, make_cfg

KEY = "webhook-test-secret-of-32-bytes-or-more"
NUMBER = "+33199000042"


@dataclass
class Receiver:
    """What the HTTP server saw, and how it answers: `fail` first requests get a 500, each
    request waits `delay_s` first."""
    url: str = ""
    fail: int = 0
    delay_s: float = 0.0
    gate: threading.Event | None = None  # when set: each request waits for it (60 s at most)
    on_fail: Callable[[], Any] | None = None  # called before a failing request's 500
    seen: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(rec.delay_s)
            if rec.gate is not None:
                rec.gate.wait(60)
            with rec.lock:
                rec.seen.append((time.monotonic(), dict(self.headers), body))
                failing = rec.fail > 0
                rec.fail -= 1
            if failing and rec.on_fail is not None:
                rec.on_fail()
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def ended_call(call_id: int, outcome: str = "message_played") -> dict[str, Any]:
    return {"id": call_id, "campaign": "utest", "attempt": 1, "number": NUMBER,
            "outcome": outcome, "stage": "done", "started_at": "2026-12-01T10:00:00.000Z",
            "answered_at": None, "ended_at": "2026-12-01T10:00:09.000Z", "hangup_cause": "16",
            "node": "pbx", "controller": None, "keys": "1"}


def calls_table(*calls: dict[str, Any]) -> webhooks.ReadCall:
    rows = {c["id"]: c for c in calls}

    async def read(call_id: int) -> dict[str, Any] | None:
        return rows.get(call_id)
    return read


def check_signature(headers: dict[str, str], body: bytes) -> None:
    want = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-IVR-Signature"] == want
    assert headers["Content-Type"] == "application/json"


def test_each_outcome_is_delivered_signed(receiver: Receiver) -> None:
    async def scenario() -> webhooks.Stats:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(),
                                  calls_table(ended_call(1), ended_call(2, "busy")))
        hooks.offer(1)
        hooks.offer(2)
        return await hooks.close()
    stats = asyncio.run(scenario())
    assert (stats.delivered, stats.dropped, stats.failed) == (2, 0, 0)
    bodies = {}
    for _, headers, body in receiver.seen:
        check_signature(headers, body)
        event = json.loads(body)
        assert headers["X-IVR-Delivery"] == f"utest:{event['call_id']}"
        bodies[event["call_id"]] = event
    assert bodies[2] == {"event": "call.outcome", "call_id": 2, "campaign": "utest",
                         "attempt": 1, "number": NUMBER, "outcome": "busy", "stage": "done",
                         "started_at": "2026-12-01T10:00:00.000Z", "answered_at": None,
                         "ended_at": "2026-12-01T10:00:09.000Z", "hangup_cause": "16",
                         "node": "pbx", "controller": None}
    assert bodies[1]["outcome"] == "message_played"


def test_a_guess_on_a_call_waits_for_the_placing_controllers_result(
        receiver: Receiver) -> None:
    """Found in review: a controller settled another's call as `error`/`orphaned` (it judged
    it dead while its writes were only slow); the webhook sent that guess, and the placing
    controller's own result, which then replaced it in the store, went out second, where a
    receiver dropping duplicates kept the guess. Whoever sends it, a guess waits for the real
    result; one that stays (the placing controller really died) is sent as it is."""
    replaced = {**ended_call(1, "error"), "stage": "orphaned", "controller": "ctl-a"}
    stays = {**ended_call(2, "error"), "stage": "orphaned", "controller": "ctl-b"}
    reads = {1: 0}

    async def read(call_id: int) -> dict[str, Any] | None:
        if call_id == 2:
            return stays
        reads[1] += 1  # the placing controller's write lands on the third read
        return replaced if reads[1] < 3 else {**replaced, "outcome": "busy", "stage": None}

    async def scenario() -> webhooks.Stats:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(), read,
                                  sleep=lambda s: asyncio.sleep(0))
        hooks.offer(1)
        hooks.offer(2)
        return await hooks.close()
    stats = asyncio.run(scenario())
    assert (stats.delivered, stats.failed) == (2, 0)
    sent = [json.loads(body) for _, _, body in receiver.seen]
    assert sorted((b["call_id"], b["outcome"], b["stage"]) for b in sent) == [
        (1, "busy", None), (2, "error", "orphaned")]


def test_a_tampered_body_does_not_match_its_signature(receiver: Receiver) -> None:
    async def scenario() -> None:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(), calls_table(ended_call(1)))
        hooks.offer(1)
        await hooks.close()
    asyncio.run(scenario())
    _, headers, body = receiver.seen[0]
    forged = body.replace(b"message_played", b"consent_given")
    assert headers["X-IVR-Signature"] != webhooks.sign(KEY.encode(), forged)


def test_a_failing_receiver_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.fail = 3

    async def scenario() -> webhooks.Stats:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(), calls_table(ended_call(7)),
                                  backoff_s=0.2)
        hooks.offer(7)
        return await hooks.close()
    stats = asyncio.run(scenario())
    assert (stats.delivered, stats.failed) == (1, 0)
    times = [t for t, _, _ in receiver.seen]
    assert len(times) == 4 and len({b for _, _, b in receiver.seen}) == 1  # the same event
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, want in zip(gaps, (0.2, 0.4, 0.8)):  # doubling each time
        assert want - 0.05 <= gap < want + 1.0, gaps  # never sooner; later on a busy machine


def test_a_receiver_failing_for_good_is_given_up_and_logged_masked(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.fail = 100

    async def scenario() -> webhooks.Stats:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(), calls_table(ended_call(7)),
                                  backoff_s=0.01, retries=2)
        hooks.offer(7)
        # Grace for the three attempts even on a loaded machine (else the event counts as
        # dropped at close, not failed: what is tested here is the giving up).
        return await hooks.close(grace_s=30)
    with caplog.at_level(logging.WARNING, logger="ivr.records.webhooks"):
        stats = asyncio.run(scenario())
    assert (stats.delivered, stats.failed) == (0, 1) and len(receiver.seen) == 3
    text = caplog.text
    assert "given up after 3 attempts" in text and "HTTP 500" in text
    assert NUMBER not in text and webhooks.mask(NUMBER) in text
    assert KEY not in text


def test_the_queue_is_bounded_offers_never_wait_and_drops_are_counted(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.delay_s = 1.0  # a slow receiver

    async def scenario() -> tuple[float, webhooks.Stats]:
        hooks = webhooks.Webhooks(receiver.url, KEY.encode(),
                                  calls_table(*(ended_call(i) for i in range(20))),
                                  queue_size=3, workers=1)
        await asyncio.sleep(0)
        hooks.offer(0)
        await asyncio.sleep(0.1)  # the worker took event 0 and waits on the receiver
        t0 = time.perf_counter()
        for i in range(1, 20):
            hooks.offer(i)
        spent = time.perf_counter() - t0
        dropped_now = hooks.stats.dropped
        stats = await hooks.close(grace_s=10)
        assert dropped_now == 16
        return spent, stats
    with caplog.at_level(logging.WARNING, logger="ivr.records.webhooks"):
        spent, stats = asyncio.run(scenario())
    assert spent < 0.05  # 19 offers while the receiver hangs: no waiting
    assert (stats.delivered, stats.dropped) == (4, 16)
    assert "queue full (3 events)" in caplog.text


def test_url_without_secret_refuses_the_start(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhooks.ENV, raising=False)
    cfg = make_cfg(tmp_path)
    assert webhooks.secret(cfg) is None  # no url: nothing to sign
    cfg.webhooks.url = "https://hooks.example.org/ivr"
    with pytest.raises(ConfigError, match=f"^webhooks.url is set but {webhooks.ENV} is not"):
        webhooks.secret(cfg)
    monkeypatch.setenv(webhooks.ENV, KEY)
    assert webhooks.secret(cfg) == KEY.encode()
    # Bytes that are not UTF-8: the environment's own, as a receiver reading os.environb has
    # them (it was a UnicodeEncodeError traceback)
    monkeypatch.setenv(webhooks.ENV, os.fsdecode(b"s\xffcret-of-the-receiver-32-bytes-long"))
    assert webhooks.secret(cfg) == b"s\xffcret-of-the-receiver-32-bytes-long" == \
        os.environb[webhooks.ENV.encode()]
    # A short secret is refused, in one line naming the variable (it was taken: 1 byte too)
    for short in ("a", "x" * 31):
        monkeypatch.setenv(webhooks.ENV, short)
        with pytest.raises(ConfigError) as exc:
            webhooks.secret(cfg)
        assert str(exc.value) == (f"{webhooks.ENV} is {len(short)} bytes long: use at least "
                                  "32 (e.g. `openssl rand -hex 32`), and give the receiver the "
                                  "same")


@pytest.mark.parametrize("url, message", [
    ("ftp://example.org/x", "is not an http(s) URL"),
    ("http://example.org/x", "use https://"),
    ("https://user:pw@example.org/x", "holds credentials")])
def test_bad_urls_are_refused_at_load(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^webhooks.url"):
        config.from_dict({"webhooks": {"url": url}})
    with pytest.raises(ConfigError) as exc:
        config.from_dict({"webhooks": {"url": url}})
    assert message in str(exc.value)


def test_a_run_delivers_every_outcome_and_is_not_held_by_a_slow_receiver(
        backend: Backend, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The composition root wires the dialer to the webhooks: six calls, a receiver that
    answers nothing until the run has stopped; the run stops all the same, then every outcome
    arrives, read from the store's rows (on PostgreSQL off the loop, naming the run's
    controller). No clock is compared: a run that waited for one delivery would stop only
    after the receiver's 60 s, with that delivery answered, and fail below."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    numbers = [fiction(i) for i in range(6)]
    receiver.gate = threading.Event()
    answered_at_stop: list[int] = []

    def on_snapshot(snap: Any) -> None:
        if snap.stopped and not receiver.gate.is_set():
            with receiver.lock:
                answered_at_stop.append(len(receiver.seen))
            receiver.gate.set()  # the run has stopped: the receiver answers from now on

    async def scenario() -> Any:
        cfg = make_cfg(backend, max_concurrent=3)
        cfg.webhooks.url = receiver.url
        cfg.webhooks.timeout_s = 120.0  # a delivery waits for the gate, never times out
        store = backend.open()
        add_contacts(store, numbers)
        callees = {n: answer(["1"], prompt_s=0.2) for n in numbers[:4]}
        callees.update({n: failed(1) for n in numbers[4:]})  # not retried
        async with FakePbx(callees, user="ivr", secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            return (await app.run_campaign(cfg, store, node=node, hashes=HASHES,
                                           on_snapshot=on_snapshot))[0]
    report = asyncio.run(scenario())
    assert report.originated == 6
    # The run stopped while the receiver had answered none of its deliveries.
    assert answered_at_stop == [0]
    events = [json.loads(body) for _, _, body in receiver.seen]
    for _, headers, body in receiver.seen:
        check_signature(headers, body)
    assert Counter(e["outcome"] for e in events) == {"message_played": 4, "failed": 2}
    assert sorted(e["number"] for e in events) == sorted(numbers)
    stored = backend.open().q("SELECT id, outcome, controller FROM calls")
    assert {(e["call_id"], e["outcome"], e["controller"]) for e in events} == \
        {(c["id"], c["outcome"], c["controller"]) for c in stored}
    if backend.url:  # README: the `ivr run` that placed the call, on PostgreSQL
        assert len({e["controller"] for e in events}) == 1 and events[0]["controller"]


def test_a_retry_after_an_erasure_sends_the_placeholder(
        backend: Backend, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a hunt: the body was built once and each retry sent it again, so a person
    erased (`ivr gdpr erase`) between two attempts had the number sent after the erasure.
    Each retry reads the row again and signs the body anew."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    number = fiction(8)
    receiver.fail = 1  # the erasure lands before the first attempt's 500
    receiver.on_fail = lambda: privacy.gdpr_erase(backend.open(), number,
                                                  datetime.now(timezone.utc))

    async def scenario() -> None:
        cfg = make_cfg(backend)
        cfg.webhooks.url = receiver.url
        store = backend.open()
        add_contacts(store, [number])
        async with FakePbx({number: answer(["1"], prompt_s=0.2)}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            await app.run_campaign(cfg, store, node=node, hashes=HASHES)
    asyncio.run(scenario())
    assert backend.open().q("SELECT number FROM calls") == [{"number": ERASED_NUMBER}]
    sent = [json.loads(body)["number"] for _, _, body in receiver.seen]
    assert sent == [number, ERASED_NUMBER], sent
    for _, headers, body in receiver.seen:
        check_signature(headers, body)
        assert headers["X-IVR-Delivery"] == "utest:1"
