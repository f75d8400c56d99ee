"""Outcomes written by a reconciliation reach webhooks.url too, each call once, on both backends
(conftest.backend): the start-up reconciliation of an earlier run's attempt, another stopped
controller's attempt (PostgreSQL), and the orphan sweep of a controller whose lease expired.
Found in review: the hooks were attached to the dialer after the start-up reconciliation, and
the reconciliation and the sweep settled attempts without telling them: never POSTed."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ivr import app
from ivr.campaign import planning, pool_watch
from ivr.records import webhooks
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from conftest import Backend
from test_controllers_lease import owner
from test_dialer import HASHES, SECRET, _open_attempt, add_contacts, contact, fiction, make_cfg
from test_node_pool import pool
import test_webhooks
from test_webhooks import KEY, Receiver

receiver = test_webhooks.receiver  # the fixture, shared


def posted(receiver: Receiver) -> list[tuple[int, str, str | None]]:
    return [(e["call_id"], e["outcome"], e["stage"])
            for e in (json.loads(body) for _, _, body in receiver.seen)]


# controllers (and so a stopped one's attempts) are PostgreSQL's
@pytest.mark.parametrize(("left_by", "backend"), [("crashed run", "sqlite"),
                                                  ("crashed run", "postgresql"),
                                                  ("stopped controller", "postgresql")],
                         indirect=["backend"])
def test_an_attempt_settled_by_the_start_up_reconciliation_is_posted_once(
        left_by: str, backend: Backend, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt left open (a run killed; on PostgreSQL also another controller that
    stopped) is settled `error`/`reconciled` when the next run starts: POSTed, once."""
    monkeypatch.setenv(webhooks.ENV, KEY)
    left_n, fresh_n = fiction(20), fiction(21)

    async def scenario() -> int:
        cfg = make_cfg(backend, max_concurrent=2)
        cfg.webhooks.url = receiver.url
        cfg.retry.max_attempts = 1  # the reconciled attempt is not retried: the run ends
        store = backend.open()
        add_contacts(store, [left_n, fresh_n])
        if left_by == "crashed run":
            left = _open_attempt(store, cfg, left_n, "pbx")
        else:
            other = backend.open()
            with other.hold_run(owner(1), cfg.campaign.name):
                left = _open_attempt(other, cfg, left_n, "pbx")
            other.close()
        async with FakePbx({fresh_n: answer(["1"], prompt_s=0.2)}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            await app.run_campaign(cfg, store, node=node, hashes=HASHES)
        return left
    left = asyncio.run(scenario())
    sent = posted(receiver)
    assert [s for s in sent if s[0] == left] == [(left, "error", "reconciled")]
    assert len(sent) == 2 and {s[1] for s in sent if s[0] != left} == {"message_played"}


def test_an_attempt_settled_by_the_orphan_sweep_is_posted_once(
        backend: Backend, receiver: Receiver) -> None:
    """Another controller's attempt, that controller gone (never registered, or its lease
    expired), its channel up nowhere: the sweep settles it `error`/`orphaned` and the webhook
    POSTs it; a second sweep, or a settle told twice, sends nothing more."""
    gone_n = fiction(11)

    async def scenario() -> tuple[int, webhooks.Stats]:
        async with pool(backend, {}, [gone_n], caps=[0, 0]) as p:
            hooks = webhooks.Webhooks(receiver.url, KEY.encode(), webhooks.reader(p.store))
            told: list[int] = []
            p.dialer.on_settled.extend([told.append, hooks.offer])
            p.store.controller_id = "dead-controller"
            row: Any = planning.claim(p.ctl.cfg, p.store, contact(p.store, gone_n), "n2",
                                      p.ctl.clock.now()).call
            p.store.controller_id = "this-controller"
            assert await pool_watch.settle_orphans(p.dialer) == 1
            assert told == [row["id"]]
            p.dialer.announce(row["id"])  # told again: not sent again
            await p.settled()
            assert await pool_watch.settle_orphans(p.dialer) == 0
            return row["id"], await hooks.close(grace_s=15)
    call_id, stats = asyncio.run(scenario())
    assert (stats.delivered, stats.failed, stats.dropped) == (1, 0, 0)
    assert posted(receiver) == [(call_id, "error", "orphaned")]
