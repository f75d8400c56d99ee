"""`ivr contacts`: importing a campaign's list (its provenance stored, its bad lines named) and
sharing a list with a second campaign."""
from __future__ import annotations

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


@click.group()
def contacts() -> None:
    """Contact lists."""


@contacts.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="List name: its provenance is stored.")
@click.option("--basis", default=None,
              help="Acquisition basis (required): consent, member_file or rented_file.")
@click.option("--acquired-on", default=None, help="When the list was acquired (YYYY-MM-DD).")
@pass_ctx
def contacts_import(ctx: Ctx, file: Path, source: str, basis: str | None,
                    acquired_on: str | None) -> None:
    """Import a CSV (header with `number`; optional `name`, `timezone`)."""
    from ivr.cli_rights import acting  # its audit rows name who imported
    from ivr.records.contacts import PartialImportError, import_csv
    try:
        report = import_csv(acting(ctx), file, campaign=ctx.cfg.campaign.name, source=source,
                            basis=basis, acquired_on=acquired_on,
                            default_region=ctx.cfg.default_region, now=datetime.now(timezone.utc),
                            allow_countries=frozenset(ctx.cfg.contacts.allow_countries),
                            log=lambda m: err_console.print(m, highlight=False),
                            default_tz=ctx.cfg.schedule.timezone)
    except PartialImportError as exc:  # the lines rejected before the fatal one, then it
        _import_notes(exc.report)
        raise
    _import_notes(report)
    console.print(report.summary(), highlight=False)


def _import_notes(report: Any) -> None:
    """An import's rejected lines and warnings, on stderr."""
    for line, reason in report.rejected:
        err_console.print(f"rejected line {line}: {reason}", highlight=False, markup=False)
    for warning in report.warnings:
        err_console.print(f"warning: {warning}", highlight=False)


@contacts.command("share")
@click.option("--source", required=True, help="The list's name, as imported.")
@click.option("--campaign", "campaign", required=True,
              help="The campaign that may call it too (its campaign.name).")
@click.option("--basis", default=None,
              help="The list's basis for that campaign (required): consent, member_file or "
                   "rented_file.")
@click.option("--from-campaign", "origin", default=None,
              help="The campaign whose list it is (default: the config's campaign.name).")
@pass_ctx
def contacts_share(ctx: Ctx, source: str, campaign: str, basis: str | None,
                   origin: str | None) -> None:
    """Let a second campaign call a list: a deliberate step, recorded in the audit table."""
    from ivr.cli_rights import acting  # its audit row names who shared
    from ivr.records.contacts import share_list
    origin = origin or ctx.cfg.campaign.name
    bound = share_list(acting(ctx), source=source, campaign=campaign, basis=basis, now=datetime.now(timezone.utc),
                       from_campaign=origin)
    console.print(f"list {source!r} of campaign {origin!r}: {bound} contact(s) now belong to "
                  f"campaign {campaign!r} too (basis {basis})", highlight=False, markup=False)
