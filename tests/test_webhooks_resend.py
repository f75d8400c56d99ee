"""`ivr webhooks resend` (ivr/cli_webhooks.py): an outcome the receiver missed, a key-9
opposition included, POSTed again from the store with the run's signed body and headers; the
run's last log line names the command to type. On both backends (conftest.backend)."""
from __future__ import annotations

import asyncio
import json
import logging
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from conftest import Backend, add_contact, attempt
from ivr import app
from ivr.cli import cli
from ivr.records import privacy, webhooks
from ivr.store.base import ERASED_NUMBER
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

import test_webhooks
from test_dialer import HASHES, SECRET, add_contacts, fiction, make_cfg
from test_webhooks import KEY, Receiver, calls_table, check_signature, ended_call

receiver = test_webhooks.receiver  # the fixture, shared
AT = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def hooked_config(cfg_file: Path, url: str, campaign: str = "utest") -> Path:
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["campaign"]["name"] = campaign
    data["webhooks"] = {"url": url, "timeout_s": 5}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg_file


def invoke(cfg_file: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--config", str(cfg_file), *args])
    return result.exit_code, result.stdout, result.stderr


def ended(store: Any, number: str, at: datetime, outcome: str = "busy",
          campaign: str = "utest") -> int:
    """One finished attempt of `number`, ended at `at`: its call id."""
    call = attempt(store, add_contact(store, number, at=AT), campaign, "+33199000000", AT)
    assert store.finish_unanswered(call["id"], outcome, "17", at, None)
    return int(call["id"])


def test_an_opposition_the_receiver_missed_is_resent_with_the_runs_body(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Found by a hunt: a callee pressed 9 while the receiver was down; the run stopped with
    the delivery still retried, said "resend them: call ids 1", and nothing could resend it
    (a next run sends only its own calls). The last line names the command; typed as it is,
    it sends the very bytes the run signed."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    number = fiction(9)
    receiver.fail = 10**6
    cfg_file = hooked_config(backend_cfg_file, receiver.url)

    async def scenario() -> None:
        cfg = make_cfg(backend)
        cfg.webhooks.url = receiver.url
        store = backend.open()
        add_contacts(store, [number])
        async with FakePbx({number: answer(["9"], prompt_s=0.2)}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            await app.run_campaign(cfg, store, node=node, hashes=HASHES)
    with caplog.at_level(logging.WARNING, logger="ivr.records.webhooks"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "resend" in r.getMessage()]
    assert said == ["webhooks: resend them with: ivr webhooks resend --campaign utest "
                    "--call-id 1"], said
    run_body = receiver.seen[0][2]
    assert json.loads(run_body)["outcome"] == "opted_out"

    receiver.fail, receiver.seen = 0, []
    words = shlex.split(said[0].split("resend them with: ")[1])
    code, out, err = invoke(cfg_file, *words[1:])
    assert (code, out) == (0, "call 1: delivered\n1 delivered, 0 failed\n"), err
    (_, headers, body), = receiver.seen
    assert body == run_body  # the same event, the same signature: a receiver drops a duplicate
    check_signature(headers, body)
    assert headers["X-IVR-Delivery"] == "utest:1"
    assert number not in out + err


def test_since_sends_the_calls_ended_since_then_an_erased_one_with_its_placeholder(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV, KEY)
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    store = backend.open()
    before = ended(store, fiction(1), datetime(2026, 12, 1, 10, 59, 59, tzinfo=timezone.utc))
    after = ended(store, fiction(2), datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc),
                  outcome="opted_out")
    ended(store, fiction(3), datetime(2026, 12, 1, 12, tzinfo=timezone.utc), campaign="c1")
    attempt(store, add_contact(store, fiction(4), at=AT), "utest", "+33199000000", AT)  # live
    # 12:00 in Paris in winter is 11:00 UTC: the same calls
    for since in ("2026-12-01T11:00:00Z", "2026-12-01T12:00:00+01:00"):
        receiver.seen = []
        code, out, err = invoke(cfg_file, "webhooks", "resend", "--since", since)
        assert (code, out) == (0, f"call {after}: delivered\n1 delivered, 0 failed\n"), err
        (_, headers, body), = receiver.seen
        check_signature(headers, body)
        assert json.loads(body) == webhooks.event(store.call(after))
        assert headers["X-IVR-Delivery"] == f"utest:{after}"
    assert before < after

    privacy.gdpr_erase(backend.open(), fiction(2), datetime.now(timezone.utc))
    receiver.seen = []
    code, out, err = invoke(cfg_file, "webhooks", "resend", "--call-id", str(after))
    assert code == 0, err
    (_, headers, body), = receiver.seen
    check_signature(headers, body)
    sent = json.loads(body)
    assert sent["number"] == ERASED_NUMBER and sent["outcome"] == "opted_out"
    assert fiction(2).encode() not in body


def test_each_call_that_cannot_go_is_a_failed_line_and_the_status_is_1(
        backend: Backend, backend_cfg_file: Path, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV, KEY)
    monkeypatch.setattr(webhooks, "RETRIES", 1)  # the run's policy, shortened for the test
    monkeypatch.setattr(webhooks, "BACKOFF_S", 0.01)
    cfg_file = hooked_config(backend_cfg_file, receiver.url)
    store = backend.open()
    ok = ended(store, fiction(1), AT)
    other = ended(store, fiction(2), AT, campaign="c1")
    live = attempt(store, add_contact(store, fiction(3), at=AT), "utest", "+33199000000",
                   AT)["id"]
    receiver.fail = 2  # both attempts of the first call sent
    code, out, err = invoke(cfg_file, "webhooks", "resend", "--call-id", str(ok),
                            "--call-id", str(other), "--call-id", str(live),
                            "--call-id", "999999")
    assert code == 1, err
    assert out.splitlines() == [
        f"call {ok}: failed (HTTP 500)",
        f"call {other}: failed (of campaign 'c1', not 'utest': resend it with that campaign's "
        "config (ivr --config FILE webhooks resend))",
        f"call {live}: failed (no outcome yet)",
        "call 999999: failed (no such call)",
        "0 delivered, 4 failed"]
    assert len(receiver.seen) == 2  # the retry policy: RETRIES + 1 attempts
    code, out, err = invoke(cfg_file, "webhooks", "resend", "--call-id", str(ok))
    assert (code, out) == (0, f"call {ok}: delivered\n1 delivered, 0 failed\n"), err
    # Another campaign's outcome never goes to this config's receiver (nor signed with its key)
    code, out, err = invoke(cfg_file, "webhooks", "resend", "--campaign", "c1", "--call-id",
                            str(other))
    assert code == 1 and out == "" and len(receiver.seen) == 3, (out, err)
    assert err.startswith("error: --campaign 'c1' is not this config's campaign ('utest')")


@pytest.mark.parametrize("args, message", [
    ((), "error: give --call-id N (repeatable) or --since TIME"),
    (("--since", "yesterday"), "error: --since 'yesterday' is not an ISO 8601 time"),
    (("--since", "2026-12-01T11:00:00"), "error: --since '2026-12-01T11:00:00' has no offset")])
def test_a_bad_request_is_one_line(cfg_file: Path, args: tuple[str, ...], message: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webhooks.ENV, KEY)
    code, out, err = invoke(hooked_config(cfg_file, "http://127.0.0.1:9/hook"), "webhooks",
                            "resend", *args)
    assert code == 1 and err.startswith(message) and len(err.splitlines()) == 1, err


def test_no_url_or_no_secret_is_one_line(cfg_file: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhooks.ENV, raising=False)
    code, _, err = invoke(cfg_file, "webhooks", "resend", "--call-id", "1")
    assert code == 1 and err == "error: webhooks.url is not set in the config: nowhere to " \
        "resend to\n", err
    code, _, err = invoke(hooked_config(cfg_file, "http://127.0.0.1:9/hook"), "webhooks",
                          "resend", "--call-id", "1")
    assert code == 1 and err.startswith(f"error: webhooks.url is set but {webhooks.ENV} is not")


def test_many_lost_are_resent_since_the_runs_start(caplog: pytest.LogCaptureFixture) -> None:
    """Beyond RESEND_IDS the ids would not fit a command line (nor, beyond 50, the log):
    the command names the run's start instead, to the second, the campaign quoted."""
    async def scenario() -> webhooks.Webhooks:
        hooks = webhooks.Webhooks("http://127.0.0.1:9/hook", KEY.encode(),
                                  calls_table(*(ended_call(i) for i in range(1, 12))),
                                  retries=0, transport=httpx.MockTransport(
                                      lambda request: httpx.Response(500)),
                                  campaign="municipales 2026")
        for i in range(1, 12):
            hooks.offer(i)
        await hooks.close(grace_s=10)
        return hooks
    with caplog.at_level(logging.WARNING, logger="ivr.records.webhooks"):
        hooks = asyncio.run(scenario())
    assert hooks.stats.failed == 11
    start = hooks.started.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert caplog.records[-1].getMessage() == (
        "webhooks: resend them with: ivr webhooks resend --campaign 'municipales 2026' "
        f"--since {start}")
    assert abs((datetime.now(timezone.utc) - hooks.started).total_seconds()) < 60


def test_the_command_names_the_runs_config(tmp_path: Path) -> None:
    """A run started with `--config b.yaml` prints a command that, typed as printed, reads
    b.yaml: its receiver and key (before: no --config, so ./config.yaml's receiver got
    campaign B's outcomes, signed with A's key)."""
    cfg_file = tmp_path / "campagne b.yaml"
    async def command() -> str:  # the run builds its Webhooks on its loop
        hooks = webhooks.Webhooks("http://127.0.0.1:9/hook", KEY.encode(), calls_table(),
                                  campaign="b", config=cfg_file)
        return hooks.resend_command([7], 1)
    words = shlex.split(asyncio.run(command()))
    assert words == ["ivr", "--config", str(cfg_file), "webhooks", "resend", "--campaign", "b",
                     "--call-id", "7"]


def test_a_run_says_at_its_start_how_to_resend_what_a_kill_would_lose(
        caplog: pytest.LogCaptureFixture) -> None:
    """The queue lives in memory: the resend line at the end is never written when the
    process is killed (SIGKILL, OOM, power). The start says it, with the run's start time."""
    async def scenario() -> None:
        hooks = webhooks.Webhooks("http://127.0.0.1:9/x", KEY.encode(), lambda i: None,
                                  campaign="utest", config=Path("/etc/ivr/config.yaml"))
        await hooks.close(grace_s=0)
    with caplog.at_level(logging.INFO, logger="ivr.records.webhooks"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "if this process is killed" in
            r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "webhooks: delivering outcomes; if this process is killed, what was queued is sent "
        "again with: ivr --config /etc/ivr/config.yaml webhooks resend --campaign utest "
        "--since 20"), said
