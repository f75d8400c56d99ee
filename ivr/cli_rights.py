"""`ivr optout`, `ivr consent`, `ivr gdpr` and `ivr purge`: the opposition list, the proof of
consent, people's access and erasure requests, and retention."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

if TYPE_CHECKING:
    from ivr.cli import Ctx

# Not imported from ivr.cli: that module registers this one (`python -m ivr.cli` would loop).
console = Console(soft_wrap=True)  # messages stay one line
err_console = Console(stderr=True, soft_wrap=True)
pass_ctx = click.pass_obj  # the main group's context object is its Ctx


def now() -> datetime:
    return datetime.now(timezone.utc)


def on_terminal() -> bool:
    """A person at a terminal (asked to confirm), not a script."""
    return sys.stdin.isatty()


def acting(ctx: Ctx) -> Any:
    """The store, its audit rows naming who ran the command (records/acting.py)."""
    from ivr.records.acting import Acting, cli_actor
    return Acting(ctx.store(), cli_actor())


@click.group()
def optout() -> None:
    """The opposition list (effective at once, for every campaign)."""


@optout.command("add")
@click.argument("number")
@click.option("--via", type=click.Choice(["post", "email", "phone", "sms"]), required=True)
@pass_ctx
def optout_add(ctx: Ctx, number: str, via: str) -> None:
    from ivr.records.privacy import optout_add as add
    ctx.unsaved = f"the opposition of {number} was NOT recorded"  # on a store failure
    new = add(acting(ctx), number, via, now(), ctx.cfg.default_region)
    console.print("added to the opposition list" if new else "already on the opposition list")


@optout.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--via", type=click.Choice(["post", "email", "phone", "sms"]), default="post")
@pass_ctx
def optout_import(ctx: Ctx, file: Path, via: str) -> None:
    """Add a file's numbers to the opposition list (one per line, or a CSV with a 'number'
    column). Exit status 1 when any line was rejected: the numbers added stay."""
    from ivr.records.contacts import MAX_LISTED_REJECTS, import_optouts
    rejected = 0

    def listed(line: int, reason: str) -> None:  # as they come; only counted past the cap
        nonlocal rejected
        rejected += 1
        if rejected <= MAX_LISTED_REJECTS:
            err_console.print(f"rejected line {line}: {reason}", highlight=False, markup=False)

    # A store failure part-way: each number is its own transaction, so the ones before stay.
    ctx.unsaved = ("the file's numbers before it were added, the rest NOT (importing the same "
                   "file again skips the ones added)")
    added, _ = import_optouts(acting(ctx), file, via=via, default_region=ctx.cfg.default_region,
                              now=now(), on_reject=listed)
    if rejected > MAX_LISTED_REJECTS:
        err_console.print(f"… and {rejected - MAX_LISTED_REJECTS} more rejected line(s), not "
                          "listed", highlight=False, markup=False)
    console.print(f"{added} number(s) added to the opposition list")
    if rejected:  # each may be a person who objected: not a success a script should pass
        click.echo(f"error: {rejected} line(s) rejected: those are NOT on the opposition list: "
                   "fix them and import them again (the numbers added stay)", err=True)
        click.get_current_context().exit(1)


@click.group()
def consent() -> None:
    """Proof of consent."""


@consent.command("show")
@click.argument("number")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None,
              help="Copy the archived audio of every prompt the person heard into DIR.")
@pass_ctx
def consent_show(ctx: Ctx, number: str, export_dir: Path | None) -> None:
    """Proof of consent: one JSON line per consent, refusal or opt-out, with each prompt heard
    (name, sha256, whether its audio is in the prompt archive); then one JSON line per
    campaign the number was part of (source "campaign": its list, basis and status)."""
    from ivr.prompts.archive import export_folder, export_heard, heard_prompts
    from ivr.records.privacy import campaigns_of, consent_proof, normalise_number
    e164 = normalise_number(number, ctx.cfg.default_region)
    if export_dir is not None:
        export_folder(export_dir)
    store = acting(ctx)
    rows = consent_proof(store, e164)
    store.audit("consent_viewed", e164, {}, datetime.now(timezone.utc))  # who looked at whom
    if not rows:
        console.print(f"no consent, refusal or opt-out recorded for {e164}")
    for row in rows:
        shown = {**row, "heard": heard_prompts(ctx.cfg, row.get("heard_sha256"))}
        console.print(json.dumps(shown, ensure_ascii=False), highlight=False, markup=False)
    for row in campaigns_of(store, e164):
        console.print(json.dumps(row, ensure_ascii=False), highlight=False, markup=False)
    if export_dir is not None:
        files = export_heard(ctx.cfg, rows, export_dir)
        console.print(f"{len(files)} audio file(s) exported to {export_dir}", highlight=False)


@click.group()
def gdpr() -> None:
    """Data-protection requests (access, erasure)."""


@gdpr.command("export")
@click.argument("number")
@pass_ctx
def gdpr_export(ctx: Ctx, number: str) -> None:
    from ivr.records.privacy import gdpr_export as export, normalise_number
    data = export(acting(ctx), normalise_number(number, ctx.cfg.default_region), now())
    print(json.dumps(data, indent=2, ensure_ascii=False))


@gdpr.command("erase")
@click.argument("number")
@click.option("--yes", is_flag=True, help="Erase without asking (asked only on a terminal).")
@pass_ctx
def gdpr_erase(ctx: Ctx, number: str, yes: bool) -> None:
    """Erase everything held about the number, for good (the opposition stays, as a keyed
    hash). On a terminal, asks first, as the console has the number typed again."""
    from datetime import timedelta

    from ivr.records.erasure_notice import calls_to_tell
    from ivr.records.privacy import erase_warning, gdpr_erase as erase, normalise_number
    cooldown = timedelta(days=ctx.cfg.schedule.refusal_cooldown_days)  # how long a refusal holds
    e164 = normalise_number(number, ctx.cfg.default_region)
    if not yes and on_terminal():
        click.confirm(f"erase everything held about {e164}? This cannot be undone", abort=True)
    store = acting(ctx)
    told = calls_to_tell(ctx.cfg, store, e164)  # read while the rows still hold the number
    counts = erase(store, e164, now(), cooldown)
    console.print(json.dumps(counts), highlight=False)
    warning = erase_warning(store, ctx.cfg.store.path, counts, e164)
    if warning:
        err_console.print(warning, highlight=False, markup=False, soft_wrap=True)
    if told and not _told_receiver(ctx, store, told):
        sys.exit(1)


def _told_receiver(ctx: Ctx, store: Any, ids: list[int]) -> bool:
    """GDPR art. 19: the webhook receiver, which holds these calls' outcomes with the number,
    is sent them again with the placeholder (records/erasure_notice.py). False, with the line
    that tells it later, when it could not be."""
    import asyncio

    from ivr.records.erasure_notice import failed_line, not_told_line, tell
    try:
        line = failed_line(ctx.cfg, asyncio.run(tell(ctx.cfg, store, ids)))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - erased already: the line
        line = not_told_line(ctx.cfg, ids, exc)
    if line:
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
        return False
    console.print(f"webhooks: the receiver was told of the erasure of {len(ids)} call(s)",
                  highlight=False)
    return True


@click.command("purge")
@click.option("--older-than", default=None, help="e.g. 365d, 24m (m: 30-day months, y: "
              "365-day years); default retention.days")
@pass_ctx
def purge(ctx: Ctx, older_than: str | None) -> None:
    """Delete data older than the retention period (opposition hashes are kept)."""
    from datetime import timedelta

    from ivr.config_checks import rules_lookback_days
    from ivr.records.privacy import parse_duration, purge as do_purge
    age = parse_duration(older_than) if older_than else timedelta(days=ctx.cfg.retention.days)
    keep = timedelta(days=rules_lookback_days(ctx.cfg.schedule))
    counts = do_purge(acting(ctx), age, now(), keep, given=older_than,
                      campaign=ctx.cfg.campaign.name)
    console.print(json.dumps(counts), highlight=False)
