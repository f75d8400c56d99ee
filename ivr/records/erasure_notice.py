"""An erasure told to the webhook receiver (GDPR art. 19: each recipient of the data is told of
its erasure). The receiver was sent each outcome with the person's number; after `ivr gdpr
erase` or the console's erasure, the campaign's calls of that number that have an outcome are
sent again as the run sends them: the same reader, signature and X-IVR-Delivery, their body now
holding `"number": "erased"`, which replaces the earlier one at the receiver.

Only this config's campaign: another campaign's outcomes went to its own receiver, with its
own key (its config's `ivr webhooks resend` tells it). The ids are read before the erasure
(the rows lose the number), the sending comes after it; a receiver that fails is named with
the `ivr webhooks resend` line that tells it later, never with the number."""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from ivr.config import Config
from ivr.records import webhooks as hooks
from ivr.records.privacy import line_forms
from ivr.store.safe_writes import one_line

log = logging.getLogger(__name__)


def calls_to_tell(cfg: Config, store: Any, number: str) -> list[int]:
    """The ids of this campaign's calls of `number` (every form of its line) with an outcome:
    what the receiver may hold. None to tell when webhooks.url is not set."""
    if not cfg.webhooks.url:
        return []
    ids: set[int] = set()
    for form in line_forms(number):
        ids |= {int(c["id"]) for c in store.person_data(form)["calls"]
                if c["campaign"] == cfg.campaign.name and c["outcome"] is not None}
    return sorted(ids)


def resend_line(cfg: Config, ids: list[int]) -> str:
    """The command that tells the receiver later (the config's path when it is known)."""
    return hooks.resend_command(cfg.source[0] if cfg.source else None, None, ids)


async def tell(cfg: Config, store: Any, ids: list[int]) -> dict[int, str | None]:
    """Each call sent again, in turn: None once delivered, else why not (the run's retries
    and timeout). A receiver that failed every retry for one call is not waited for again:
    the calls after it are named as not sent (a number called often would otherwise hold the
    command for minutes). A missing or short secret is one ConfigError before anything."""
    key = hooks.secret(cfg)
    if key is None or not ids:
        return {}
    sender = hooks.one_at_a_time(cfg, key, hooks.reader(store))
    done: dict[int, str | None] = {}
    down: str | None = None  # the receiver's failure: the calls after it are not tried
    try:
        for call_id in ids:
            if down is not None:
                done[call_id] = down
                continue
            row = store.call(call_id)
            if row is None:  # not the receiver's fault: the next call is tried
                done[call_id] = "its row is gone"
                continue
            done[call_id] = down = await sender.send(row)
    finally:
        await sender.close(grace_s=0)
    return done


def failed_line(cfg: Config, done: dict[int, str | None]) -> str | None:
    """One line naming the calls the receiver was not told of, and how to tell it."""
    failed = sorted(i for i, problem in done.items() if problem is not None)
    if not failed:
        return None
    first = done[failed[0]]
    return (f"webhooks: the receiver was not told of the erasure of {len(failed)} call(s) "
            f"({first}); tell it once it is up: {resend_line(cfg, failed)}")


def not_told_line(cfg: Config, ids: list[int], exc: BaseException) -> str:
    """The line when nothing could be sent (no secret, the store away, interrupted)."""
    return (f"webhooks: the receiver was not told of the erasure ({one_line(exc)}): "
            f"{resend_line(cfg, ids)}")


def tell_in_background(cfg: Config, store_here: Callable[[], Any], ids: list[int]) -> None:
    """For the console (a request does not wait for a receiver's retries): sent from a thread
    of its own, with that thread's store (`store_here`: a SQLite store serves one thread), the
    result logged."""
    if not ids:
        return

    def run() -> None:
        try:
            line = failed_line(cfg, asyncio.run(tell(cfg, store_here(), ids)))
        except Exception as exc:  # noqa: BLE001 - a secret missing, the store away: the line
            line = not_told_line(cfg, ids, exc)
        if line:
            log.warning("%s", line)
        else:
            log.info("webhooks: the receiver was told of the erasure of %d call(s)", len(ids))
    threading.Thread(target=run, name="erasure-notice", daemon=True).start()
