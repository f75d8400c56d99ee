"""A dead webhook receiver does not flood the log (ivr/records/webhooks.py `_tell`): found in
a hunt, 200 outcomes to a receiver that refuses every connection wrote 1,000 WARNING lines
(one per retry) and 200 ERROR lines (one per outcome given up). Now the first failed attempt
and the first outcome given up are said, then one line of each a minute at most with the
count of those not said; the end-of-run summary still names every call not delivered."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

import httpx
import pytest

from ivr.records import webhooks

from test_webhooks import KEY, NUMBER, calls_table, ended_call


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_a_dead_receiver_is_said_once_then_once_a_minute_with_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]

    async def nosleep(seconds: float) -> None:
        await asyncio.sleep(0)

    async def scenario() -> webhooks.Stats:
        hooks = webhooks.Webhooks("http://127.0.0.1:9/hook", KEY.encode(),
                                  calls_table(*(ended_call(i) for i in range(1, 202))),
                                  sleep=nosleep, transport=httpx.MockTransport(refuse),
                                  clock=lambda: now[0])
        for i in range(1, 201):
            hooks.offer(i)
        await asyncio.wait_for(hooks.queue.join(), 60)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING][2:], \
            "more than one line of each"
        now[0] += 61.0  # a minute on: the next failures are said, with the count
        hooks.offer(201)
        await asyncio.wait_for(hooks.queue.join(), 60)
        return await hooks.close(grace_s=1)
    with caplog.at_level(logging.INFO, logger="ivr.records.webhooks"):
        stats = asyncio.run(scenario())
    assert (stats.delivered, stats.failed) == (0, 201)
    during = [r for r in caplog.records if "given up after" in r.getMessage()
              or "retry in" in r.getMessage()]
    assert Counter(r.levelname for r in during) == {"WARNING": 2, "ERROR": 2}, \
        Counter(r.levelname for r in during)
    last_retry, last_given_up = during[-2].getMessage(), during[-1].getMessage()
    # 200 outcomes x 5 retries, the first said; then call 201's first retry, said
    assert "(999 more attempts failed in the last 61 s; said once a minute)" in last_retry
    assert "(199 more outcomes given up in the last 61 s; said once a minute)" in \
        last_given_up, last_given_up
    assert "call 201" in last_given_up and NUMBER not in caplog.text
    # the end-of-run summary stays: counts, and every call not delivered by id
    text = caplog.text
    assert "0 delivered, 0 dropped, 201 failed" in text
    assert "201 outcome(s) not delivered (failed after every retry, or unreadable)" in text
