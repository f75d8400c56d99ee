"""`ivr webhooks resend`: outcomes the receiver missed (down until the retries ran out, or the
run stopped with deliveries queued), POSTed again as the run sends them: the row read by the
same reader, the same signed body and headers (X-IVR-Delivery: a receiver drops what it has),
the same timeout and retries (records/webhooks.py `Webhooks.send`). One call at a time."""
from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from ivr.errors import IvrError

if TYPE_CHECKING:
    from ivr.cli import Ctx

# Not imported from ivr.cli: that module registers this one (`python -m ivr.cli` would loop).
console = Console(soft_wrap=True)  # messages stay one line
pass_ctx = click.pass_obj  # the main group's context object is its Ctx
MAX_ID = 2**63 - 1  # ids are 64-bit signed integers on both backends


@click.group()
def webhooks() -> None:
    """Outcome webhooks (webhooks.url)."""


def parse_since(text: str) -> datetime:
    """An ISO 8601 time with its offset: one without is refused (UTC or Paris? an hour of
    calls either way)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise IvrError(f"--since {text!r} is not an ISO 8601 time: e.g. "
                       "2026-12-03T21:00:00Z") from None
    if at.tzinfo is None:
        raise IvrError(f"--since {text!r} has no offset: add Z for UTC (as the run's log "
                       "gives it), or +01:00 for Paris in winter")
    return at


def ended_since(store: Any, campaign: str, since: datetime) -> list[int]:
    """The campaign's calls with an outcome that ended at `since` or later, in id order
    (store.export_calls: read in pages, never all in memory)."""
    from ivr.store.base import parse_utc
    return [int(c["id"]) for c in store.export_calls(campaign)
            if c["outcome"] is not None and c["ended_at"] and parse_utc(c["ended_at"]) >= since]


@webhooks.command("resend")
@click.option("--call-id", "call_ids", multiple=True, type=click.IntRange(1, MAX_ID),
              help="This call (repeat it for each): the ids the run's log names.")
@click.option("--since", default=None, help="The calls ended since this time, ISO 8601 with "
              "its offset (e.g. 2026-12-03T21:00:00Z, the run's start in its log).")
@click.option("--campaign", default=None,
              help="This campaign (default: the config's campaign.name).")
@pass_ctx
def resend(ctx: Ctx, call_ids: tuple[int, ...], since: str | None,
           campaign: str | None) -> None:
    """POST again the outcomes a receiver missed: one line per call, delivered or failed (the
    exit status 1 if any failed). Never a phone number on screen; an erased call is sent with
    its placeholder."""
    from ivr.records import webhooks as hooks
    if not call_ids and since is None:
        raise IvrError("give --call-id N (repeatable) or --since TIME: the run's log names "
                       "them (`webhooks: resend them with: …`)")
    start = parse_since(since) if since is not None else None
    key = hooks.secret(ctx.cfg)
    if key is None:
        raise IvrError("webhooks.url is not set in the config: nowhere to resend to")
    own = ctx.cfg.campaign.name
    if campaign is not None and campaign != own:  # its outcomes go to its own receiver only
        raise IvrError(f"--campaign {campaign!r} is not this config's campaign ({own!r}): its "
                       "outcomes go to its own receiver: `ivr --config <its config> webhooks "
                       "resend`")
    campaign = own
    store = ctx.store()
    ids = set(call_ids) | set(ended_since(store, campaign, start) if start else ())
    if not ids:
        console.print(f"no call of campaign {campaign!r} ended since {since}: nothing to resend",
                      highlight=False, markup=False)
        return
    failed = asyncio.run(resend_all(ctx, key, store, campaign, sorted(ids)))
    console.print(f"{len(ids) - failed} delivered, {failed} failed", highlight=False)
    if failed:
        sys.exit(1)


async def resend_all(ctx: Ctx, key: bytes, store: Any, campaign: str, ids: list[int]) -> int:
    """Each call POSTed in turn, its line printed as it ends; returns how many failed."""
    from ivr.records import webhooks as hooks
    read = hooks.reader(store)  # the run's reader: the same row, the same body
    sender = hooks.one_at_a_time(ctx.cfg, key, read)
    failed = 0
    try:
        for call_id in ids:
            problem = await resend_one(sender, read, campaign, call_id)
            failed += problem is not None
            console.print(f"call {call_id}: " + (f"failed ({problem})" if problem else
                                                 "delivered"), highlight=False, markup=False)
    finally:
        await sender.close(grace_s=0)
    return failed


async def resend_one(sender: Any, read: Any, campaign: str, call_id: int) -> str | None:
    """None once delivered, else why not: a call unknown, of another campaign or not ended
    is not sent."""
    call = await read(call_id)
    if call is None:
        return "no such call"
    if call["campaign"] != campaign:
        return (f"of campaign {call['campaign']!r}, not {campaign!r}: resend it with that "
                "campaign's config (ivr --config FILE webhooks resend)")
    if call.get("outcome") is None:
        return "no outcome yet"
    problem: str | None = await sender.send(call)
    return problem
