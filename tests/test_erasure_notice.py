"""GDPR art. 19: an erasure is told to the webhook receiver, which holds the person's outcomes
with the number. `ivr gdpr erase` and the console's erasure send this campaign's calls of the
number again, as the run signs them, now with `"number": "erased"`; a receiver that fails is
one line with the `ivr webhooks resend` that tells it later, and the status 1
(ivr/records/erasure_notice.py). On both backends (conftest.backend)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Backend, add_contact, attempt
from ivr import config
from ivr.records import erasure_notice, webhooks
from ivr.store.base import ERASED_NUMBER

import test_webhooks
from test_dialer import fiction
from test_webhooks import KEY, Receiver, check_signature
from test_webhooks_resend import ended, hooked_config, invoke

receiver = test_webhooks.receiver  # the fixture, shared
LATER = datetime(2026, 12, 1, 11, tzinfo=timezone.utc)


def test_cli_erasure_sends_each_outcome_again_with_the_placeholder(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV, KEY)
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    store = backend.open()
    first = ended(store, fiction(1), LATER)
    ended(store, fiction(2), LATER)  # someone else: not sent
    other = attempt(store, {"id": store.call(first)["contact_id"], "number": fiction(1)}, "c1",
                    "+33199000000", LATER)  # another campaign's: its own receiver's
    assert store.finish_unanswered(other["id"], "busy", "17", LATER, None)
    code, out, err = invoke(cfg_file, "gdpr", "erase", fiction(1), "--yes")
    assert code == 0, err
    assert out.splitlines()[-1] == "webhooks: the receiver was told of the erasure of 1 call(s)"
    (_, headers, body), = receiver.seen
    check_signature(headers, body)
    assert headers["X-IVR-Delivery"] == f"utest:{first}"
    sent = json.loads(body)
    assert (sent["call_id"], sent["number"]) == (first, ERASED_NUMBER)
    assert fiction(1).encode() not in body and fiction(1) not in out + err


def test_a_receiver_down_is_one_line_with_the_command_and_status_1(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV, KEY)
    monkeypatch.setattr(webhooks, "RETRIES", 1)  # the run's policy, shortened for the test
    monkeypatch.setattr(webhooks, "BACKOFF_S", 0.01)
    receiver.fail = 10**6
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    call = ended(backend.open(), fiction(3), LATER)
    code, out, err = invoke(cfg_file, "gdpr", "erase", fiction(3), "--yes")
    assert code == 1
    assert json.loads(out.splitlines()[0])["calls"] == 1  # erased all the same
    assert err.strip() == (
        "webhooks: the receiver was not told of the erasure of 1 call(s) (HTTP 500); tell it "
        f"once it is up: ivr --config {cfg_file.resolve()} webhooks resend --call-id {call}")
    assert backend.open().call(call)["number"] == ERASED_NUMBER


def test_no_secret_still_erases_and_names_the_command(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhooks.ENV, raising=False)
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    call = ended(backend.open(), fiction(4), LATER)
    code, _, err = invoke(cfg_file, "gdpr", "erase", fiction(4), "--yes")
    assert code == 1 and receiver.seen == []
    assert err.startswith("webhooks: the receiver was not told of the erasure (webhooks.url is "
                          f"set but {webhooks.ENV} is not") and \
        err.strip().endswith(f"webhooks resend --call-id {call}")
    assert backend.open().call(call)["number"] == ERASED_NUMBER


def test_the_console_tells_it_from_a_thread_of_its_own(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's erasure (web/api.erase_number) does not wait for the receiver: the
    calls are read before the rows lose the number, and sent from a thread with its own
    store (a SQLite connection serves one thread)."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    cfg = config.load(hooked_config(backend_cfg_file, receiver.url))
    store = backend.open()
    call = ended(store, fiction(5), LATER)
    ids = erasure_notice.calls_to_tell(cfg, store, fiction(5))
    assert ids == [call]
    from ivr.records.privacy import gdpr_erase
    gdpr_erase(store, fiction(5), datetime.now(timezone.utc))
    erasure_notice.tell_in_background(cfg, backend.open, ids)
    deadline = time.monotonic() + 30
    while not receiver.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    (_, headers, body), = receiver.seen
    check_signature(headers, body)
    assert json.loads(body)["number"] == ERASED_NUMBER


def test_a_receiver_down_is_tried_for_one_call_only(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call had the run's whole retry policy (~31-61 s with the default): a number
    called often held `ivr gdpr erase` for minutes. Once the receiver failed every retry for
    one call, the others are named in the resend line without being tried."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    monkeypatch.setattr(webhooks, "RETRIES", 1)
    monkeypatch.setattr(webhooks, "BACKOFF_S", 0.01)
    receiver.fail = 10**6
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    store = backend.open()
    contact = add_contact(store, fiction(6), at=LATER)
    calls = [attempt(store, contact, "utest", "+33199000000", LATER) for _ in range(3)]
    for call in calls:  # three attempts of one person, each ended
        assert store.finish_unanswered(call["id"], "busy", "17", LATER, None)
    ids = [c["id"] for c in calls]
    code, _, err = invoke(cfg_file, "gdpr", "erase", fiction(6), "--yes")
    assert code == 1 and len(receiver.seen) == 2  # the first call's two tries, no more
    assert err.strip().endswith("webhooks resend " + " ".join(f"--call-id {i}" for i in ids))
    assert "of 3 call(s)" in err


def test_a_store_error_while_telling_still_names_the_command(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a missing secret was caught: the store away (a locked SQLite, PostgreSQL gone)
    while reading the rows to send was a traceback after a done erasure."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    cfg = config.load(hooked_config(backend_cfg_file, receiver.url))
    call = ended(backend.open(), fiction(7), LATER)

    class Away:
        def call(self, call_id: int) -> None:
            raise RuntimeError("database is locked")
    import asyncio
    with pytest.raises(RuntimeError):
        asyncio.run(erasure_notice.tell(cfg, Away(), [call]))
    line = erasure_notice.not_told_line(cfg, [call], RuntimeError("database is locked"))
    assert line.startswith("webhooks: the receiver was not told of the erasure (database is "
                           "locked): ivr --config ") and line.endswith(f"--call-id {call}")
