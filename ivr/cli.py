"""The `ivr` command. Thin: each command opens what it needs, calls one library function and
turns library errors into one-line messages."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ivr import config as config_mod
from ivr.config import Config
from ivr.cli_guard import NamedStdout, sigterm_as_interrupt
from ivr.errors import IvrError, store_trouble

if __name__ == "__main__":  # `python -m ivr.cli`: run the `ivr.cli` module the command modules
    from ivr.cli import main as _main  # register on (this file as __main__ is a second copy)
    _main()

console = Console(soft_wrap=True)  # messages stay one line; tables still fit
err_console = Console(stderr=True, soft_wrap=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


class Ctx:
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self._cfg: Config | None = None
        self.created: Path | None = None  # a store this command created
        # What a store failure leaves undone, for its error line (e.g. an opposition not
        # recorded): set by the command before it writes.
        self.unsaved = ""

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            self._cfg = config_mod.load(self.config_path)
        return self._cfg

    def store(self, busy_timeout_s: float = 30.0, *,  # type: ignore[no-untyped-def]
              serving: bool = False):
        """`serving`: a command that runs until stopped (run, serve, web) says at once that it
        created the store; another says it when it ends, on its error line if it fails."""
        # the factory, not ivr.app's wrapper: a dry run or a report need not load the run's
        # modules (dialer, AGI, uvloop: ~25 MB and 0.3 s)
        from ivr.store.factory import open_store
        path = None if self.cfg.store.url else self.cfg.path(self.cfg.store.path)
        new = path is not None and not path.exists()
        store = open_store(self.cfg, busy_timeout_s)
        if new and serving:
            err_console.print(new_store_note(path), highlight=False, markup=False)
        elif new:
            self.created = path
        return store


def new_store_note(path: Path) -> str:
    """A mistyped store.path would otherwise go unnoticed, the opposition list with it."""
    return (f"note: new store created at {path} (no contacts and no opposition list yet): "
            "check store.path if you expected one")


def _store_name(obj: Any) -> str:
    """The store's file, or PostgreSQL's host and database (never its password)."""
    try:
        store = obj.cfg.store
        if not store.url:
            return str(obj.cfg.path(store.path))
    except Exception:  # noqa: BLE001  (the config itself failed: the error line still says it)
        return "(see store in the config)"
    from urllib.parse import urlsplit
    if "://" not in store.url:  # a "key=value" conninfo may hold password=
        return "PostgreSQL (store.url)"
    url = urlsplit(store.url)
    return f"PostgreSQL {url.hostname or 'local'}{url.path or ''}"


pass_ctx = click.make_pass_decorator(Ctx)


class IvrGroup(click.Group):
    """Library errors become one line on stderr and exit code 1; nothing else is caught."""

    def invoke(self, ctx: click.Context) -> Any:
        stdout, sys.stdout = sys.stdout, NamedStdout(sys.stdout)
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a full disk said here, not as a traceback at exit
        except (SystemExit, click.exceptions.Exit):  # a command's own status (check, optout
            _note_new_store(ctx)  # import): the store it created said all the same
            raise
        except IvrError as exc:
            created = getattr(ctx.obj, "created", None)
            # An import stopped part-way (PartialImportError) left rows in it: not empty.
            what = "new" if hasattr(exc, "report") else "new, empty"
            also = f" (this command created a {what} store at {created}: check store.path)" \
                if created is not None else ""
            click.echo(f"error: {exc}{also}", err=True)  # still one line
            ctx.exit(1)
        except OSError as exc:  # a path the user gave, or stdout, unwritable: not our bug
            where = f"{exc.filename}: " if exc.filename is not None else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except Exception as exc:  # a store that is away (full disk, lock, PostgreSQL): one line
            trouble = store_trouble(exc)
            if trouble is None:
                raise  # a bug: its traceback
            unsaved = getattr(ctx.obj, "unsaved", "")
            click.echo(f"error: store {_store_name(ctx.obj)}: {trouble[0]}"
                       f"{f'; {unsaved}' if unsaved else ''}: {trouble[1]}", err=True)
            ctx.exit(1)
        finally:
            sys.stdout = stdout
        _note_new_store(ctx)
        return result


def _note_new_store(ctx: click.Context) -> None:
    created = getattr(ctx.obj, "created", None)
    if created is not None:
        err_console.print(new_store_note(created), highlight=False, markup=False)


@click.group(cls=IvrGroup)
@click.option("--config", "config_path", default="config.yaml", show_default=True,
              help="Campaign configuration file.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.pass_context
def cli(ctx: click.Context, config_path: str, verbose: bool) -> None:
    """Consent-first automated political calls over Asterisk, CNIL rules enforced."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):  # their INFO/DEBUG lines quote webhooks.url's query
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = Ctx(config_path)
    sigterm_as_interrupt(ctx)


# -- prompts --------------------------------------------------------------------------------
@cli.group()
def prompts() -> None:
    """Render, fingerprint and install the campaign's prompts."""


@prompts.command("build")
@click.option("--engine", type=click.Choice(["gtts", "espeak", "auto"]), default=None,
              help="Override prompts.engine for TTS prompts.")
@click.option("--install/--no-install", default=True,
              help="Copy the built prompts to the PBX sounds folder.")
@pass_ctx
def prompts_build(ctx: Ctx, engine: str | None, install: bool) -> None:
    """Render every prompt of config.yaml to 8 kHz telephony audio, with a manifest."""
    from ivr.compliance.consent_first import require_consent_first
    from ivr.prompts.build import build_prompts
    require_consent_first(ctx.cfg)
    manifest = build_prompts(ctx.cfg, engine_override=engine,
                             log=lambda m: console.print(m, highlight=False))
    console.print(f"{len(manifest['prompts'])} prompts built in "
                  f"{ctx.cfg.path(ctx.cfg.prompts.build_dir)}", highlight=False)
    if install:
        from ivr.prompts.install import install_prompts_to_pbx
        try:
            dest = install_prompts_to_pbx(ctx.cfg)
            console.print(f"installed into {dest}/ivr", highlight=False)
        except IvrError as exc:
            err_console.print(f"not installed: {exc}", highlight=False)


# -- run ------------------------------------------------------------------------------------
def _preflight(ctx: Ctx, store: Any, dry_run: bool = False) -> list[Any]:
    from ivr.compliance.campaign_check import check_campaign
    return check_campaign(ctx.cfg, store, dry_run=dry_run)


@cli.command("check")
@pass_ctx
def check(ctx: Ctx) -> None:
    """Preflight: list every rule the campaign breaks (errors refuse `ivr run`), and what
    each PBX node would refuse (asked over AMI)."""
    from rich.markup import escape

    from ivr.compliance.campaign_check import pbx_violations
    from ivr.records.run_audit import record_rules
    store = ctx.store()
    record_rules(ctx.cfg, store, now())  # how far back its rules read: `ivr purge` keeps it
    violations = _preflight(ctx, store) + pbx_violations(ctx.cfg)
    for v in violations:
        colour = "red" if v.severity == "error" else "yellow"
        # escaped: rich took "[globals]", "[ivr]", "pbx.nodes[n2]" in a message for markup
        console.print(f"[{colour}]{v.severity}[/] {v.code}: {escape(v.message)}",
                      highlight=False)
    errors = [v for v in violations if v.severity == "error"]
    console.print(f"{len(errors)} error(s), {len(violations) - len(errors)} warning(s)")
    sys.exit(1 if errors else 0)


@cli.command("run")
@click.option("--dry-run", is_flag=True, help="Show who would be called now, and who not, why.")
@click.option("--standby", is_flag=True, help="Dial nobody until Start in the web console.")
@click.option("--resume", is_flag=True, help="Start even though the web console paused the "
              "campaign (without it, the run joins that pause).")
@click.option("--wait", is_flag=True, help="When nobody can be called now (outside the calling "
              "window), wait for the next allowed time instead of ending (a service's run).")
@pass_ctx
def run_cmd(ctx: Ctx, dry_run: bool, standby: bool, wait: bool, resume: bool) -> None:
    """Call the due contacts: pacing, retries, calling rules; Ctrl-C stops gracefully."""
    from ivr.compliance.campaign_check import raise_on_errors
    store = ctx.store(busy_timeout_s=0.5, serving=True)  # locked: the run pauses, not the loop
    violations = _preflight(ctx, store, dry_run)
    for v in violations:  # every run shows its warnings, so an override is never silent
        if v.severity != "error":
            err_console.print(f"warning {v.code}: {v.message}", highlight=False, markup=False)
    raise_on_errors(violations)
    if dry_run:
        _dry_run(ctx, store)
        return
    from ivr.records.run_audit import audit_run_start
    audit_run_start(ctx.cfg, store, violations, now())
    _run(ctx, store, standby, wait, resume)


def _dry_run(ctx: Ctx, store: Any) -> None:
    """Who would be called now, then who not and why, then the counts: plain lines written as
    the plan streams (markup-free, no rich per line: 100,000 lines took seconds); the
    waiting ones wait in a temporary file, so a million contacts never sit in memory."""
    import gc
    import shutil
    import tempfile

    out = sys.stdout
    # The plan makes a few short-lived objects per contact (rows, verdict tuples, lines), none
    # in a cycle: reference counting frees them; the cycle collector's passes over them were
    # ~10 % of the dry run's CPU (1.55 -> 1.37 s at 100,000), for nothing to collect.
    was = gc.isenabled()  # a caller (a test, an embedding program) may have it off: kept off
    gc.disable()
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as later:
            due, waiting = _plan_lines(ctx, store, out, later)
            later.seek(0)
            shutil.copyfileobj(later, out)
    finally:
        if was:
            gc.enable()
    out.write(f"{due} would be called now, {waiting} not\n")
    out.flush()


def _plan_lines(ctx: Ctx, store: Any, out: Any, later: Any) -> tuple[int, int]:
    """The due contacts' lines to `out`, the others' to `later`, one write of each per chunk
    of the plan; returns their counts."""
    from ivr.campaign.planning import judged_chunks
    due = waiting = 0
    for chunk in judged_chunks(ctx.cfg, store, now()):
        calls = [f"call     {c['number']}  ({c['source']})\n" for c, v, _ in chunk if v.allowed]
        not_now = [f"not now  {c['number']}  {v.reason}: {v.detail}\n"
                   for c, v, _ in chunk if not v.allowed]
        out.write("".join(calls))
        later.write("".join(not_now))
        due, waiting = due + len(calls), waiting + len(not_now)
    return due, waiting


# Its own status, not 1 (a refused config or preflight): a service manager restarting `ivr run`
# on failure dialled 20 more contacts into the refusing trunk each cycle, each one exhausted
# (README's unit has RestartPreventExitStatus=4).
EXIT_CARRIER = 4
# A stop (the operator's, the console's hard stop) that left calls open, the PBX away: its own
# status too. As 1 it made the unit's Restart=on-failure start the run again 30 s later, which
# wrote `running` over the console's stop and dialled (RestartPreventExitStatus=4 5).
EXIT_LEFT_OPEN = 5


def _run(ctx: Ctx, store: Any, standby: bool = False, wait: bool = False,
         resume: bool = False) -> None:
    from ivr.app import run, run_campaign
    from ivr.campaign.progress import Progress
    from ivr.campaign.stopping import Interrupted
    try:
        with Progress(console) as progress:
            run(run_campaign(ctx.cfg, store, on_snapshot=progress.show, standby=standby,
                             wait=wait, resume=resume))
    except Interrupted as exc:
        last = progress.last  # a breaker's stop stays a breaker's (4), calls left open or not
        carrier = last is not None and last.stopped_by == "carrier"
        if not exc.left_open and not carrier:  # a stop all the same: 0, as the operator's
            console.print(f"run stopped: {exc}", highlight=False)
            return
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CARRIER if carrier else EXIT_LEFT_OPEN)
    final = progress.last  # the report reads the run's final snapshot, nothing else
    assert final is not None and final.stopped
    console.print(f"run {final.stopped_by}: {final.originated} call(s) placed; {final.why}",
                  highlight=False)
    if final.stopped_by == "carrier":  # the trunk refused call after call: not a clean end
        sys.exit(EXIT_CARRIER)


@cli.command("serve")
@pass_ctx
def serve_cmd(ctx: Ctx) -> None:
    """Serve the inbound opposition line (FastAGI `callback`) between runs, until Ctrl-C."""
    from ivr.app import run
    from ivr.callback_line import serve_forever
    where = f"{ctx.cfg.agi.host}:{ctx.cfg.agi.port}"
    run(serve_forever(ctx.cfg, ctx.store(busy_timeout_s=0.5, serving=True),  # locked: retried
                      listening=lambda: console.print(f"serving FastAGI on {where} (Ctrl-C stops)")))


# -- report ---------------------------------------------------------------------------------
@cli.command("report")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--campaign", default=None,
              help="This campaign (default: the config's campaign.name).")
@click.option("--all", "every", is_flag=True, help="Every campaign of the store.")
@pass_ctx
def report_cmd(ctx: Ctx, fmt: str, campaign: str | None, every: bool) -> None:
    """Outcomes, consent and completion rates, per attempt and per source: of one campaign,
    or of every campaign with --all."""
    from ivr.records import report
    if every and campaign:
        from ivr.errors import IvrError
        raise IvrError("--all and --campaign exclude each other: give one of them")
    named, campaign = campaign, None if every else (campaign or ctx.cfg.campaign.name)
    store = ctx.store()
    known = store.campaigns() if named else []
    if named and named not in known:  # a typo would read as an empty report
        err_console.print(f"warning: no campaign {named!r} in this store (its campaigns: "
                          f"{', '.join(known) or 'none'})", highlight=False, markup=False)
    # CSV and JSON in UTF-8 whatever the terminal's locale: the console's bytes exactly (a
    # latin-1 locale wrote other bytes, and a name outside it stopped the CSV half-way).
    sys.stdout.flush()
    if fmt == "csv":
        report.calls_csv(store, sys.stdout.buffer, campaign=campaign)
        sys.stdout.buffer.flush()  # a full disk is said here, as an error of this command
    elif fmt == "json":
        sys.stdout.buffer.write((json.dumps(report.summary(store, campaign), indent=2,
                                            ensure_ascii=False) + "\n").encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        console.print(report.render(report.summary(store, campaign)))


# -- demo -----------------------------------------------------------------------------------
@cli.command("demo")
@click.option("--web", is_flag=True, help="Then leave the web console running (URL and a "
              "one-time admin password printed).")
@click.option("--nodes", default=1, show_default=True, type=click.IntRange(1, 9),
              help="Sandbox Asterisk nodes (more than 1: on the private PostgreSQL).")
@click.option("--controllers", default=1, show_default=True, type=click.IntRange(1, 8),
              help="`ivr run` processes on the one campaign (more than 1: on the private "
              "PostgreSQL).")
@pass_ctx
def demo(ctx: Ctx, web: bool, nodes: int, controllers: int) -> None:
    """Everything on a fresh machine: prompts, sandbox PBX, demo list, a run, the report."""
    from ivr.demo import run_demo
    run_demo(ctx.cfg, console, web, nodes, controllers, Path(ctx.config_path))


from ivr.cli_users import users  # noqa: E402 (own module: cli.py's size budget)
cli.add_command(users)


from ivr.cli_db import db as db_group  # noqa: E402 (own module: cli.py's size budget)
cli.add_command(db_group)


from ivr.cli_prompts import prompts_prune  # noqa: E402 (own module: cli.py's size budget)
prompts.add_command(prompts_prune)


from ivr.cli_web import web as web_cmd  # noqa: E402 (own module: cli.py's size budget)
cli.add_command(web_cmd)


def main() -> None:
    cli()


from ivr.cli_pbx import pbx  # noqa: E402 (own module: cli.py's size budget)
cli.add_command(pbx)


from ivr.cli_rights import consent, gdpr, optout, purge  # noqa: E402 (own module: size budget)
for _command in (optout, consent, gdpr, purge):
    cli.add_command(_command)


from ivr.cli_webhooks import webhooks as webhooks_group  # noqa: E402 (own module: size budget)
cli.add_command(webhooks_group)


from ivr.cli_contacts import contacts  # noqa: E402 (own module: cli.py's size budget)
cli.add_command(contacts)
