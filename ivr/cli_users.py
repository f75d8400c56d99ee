"""`ivr users`: the web console's users (argon2id passwords) and their API tokens (issued,
listed, revoked)."""
from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click
from rich.console import Console

from ivr.errors import IvrError
from ivr.records.acting import cli_actor
from ivr.store.sqlite_console import LastAdmin
from ivr.store.user_scope import campaign_names, check_scope, shown
from ivr.web_users import (ROLES, check_password, check_role, hash_password, new_token,
                           token_hash)

if TYPE_CHECKING:
    from ivr.cli import Ctx
    from ivr.store.base import Row, StoreBackend

# Not imported from ivr.cli: that module registers this one (`python -m ivr.cli` would loop).
console = Console(soft_wrap=True)
pass_ctx = click.pass_obj  # the main group's context object is its Ctx
MAX_ID = 2**63 - 1  # ids are 64-bit signed integers on both backends


def now() -> datetime:
    return datetime.now(timezone.utc)


def known_user(store: StoreBackend, name: str) -> Row:
    """NAME's row; every users command refuses an unknown name with the same fix."""
    user = store.user_by_name(name)
    if user is None:
        raise IvrError(f"user {name!r} does not exist: add it with `ivr users add {name} "
                       "--role ROLE`")
    return user


def not_active(token_id: str, name: str) -> IvrError:
    return IvrError(f"TOKEN_ID: {token_id} is not an active token of {name!r}: see "
                    f"`ivr users tokens {name}`")


def parse_token_id(text: str, name: str) -> int:
    """TOKEN_ID as given (a string, so that `abc` or `-1` get one line, not click's usage
    text). An id no token can have (below 1, beyond 64 bits: both stores would raise) is one
    of none of NAME's active tokens."""
    if re.fullmatch(r"-?[0-9]+", text) is None:
        raise IvrError(f"TOKEN_ID: {text!r} is not a token's id (a whole number): see "
                       f"`ivr users tokens {name}`")
    digits = text.lstrip("-0")  # checked before int(): Python refuses over 4300 digits
    if text.startswith("-") or not digits or len(digits) > 19 or int(digits) > MAX_ID:
        raise not_active(text, name)
    return int(digits)


@click.group()
def users() -> None:
    """Users of the web console (`ivr web`) and their API tokens."""


def read_password() -> str:
    """From the terminal, twice (nothing echoed); else the first line of stdin (scripts)."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        try:
            password = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:  # a strict stdin; else the surrogates check_password refuses
            raise IvrError("password: holds bytes that are not UTF-8 text: type or pipe it as "
                           "UTF-8") from None
    try:
        return check_password(password)
    except ValueError as exc:
        raise IvrError(str(exc)) from None


CAMPAIGN_HELP = ("Bind the user to this campaign: it sees and acts on its bound campaigns "
                 "alone (repeat for several; operator or viewer only). Without it: every "
                 "campaign.")


def bound_to(name: str, role: str, campaigns: tuple[str, ...]) -> list[str] | None:
    """--campaign as the store keeps it (sorted, each once; None for every campaign),
    checked by the store's own rules before a password is asked."""
    if not campaigns:
        return None
    try:
        bound = campaign_names(campaigns)
        check_scope(name, role, bound)
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    return bound


def not_in_store(store: StoreBackend, campaigns: list[str] | None) -> str:
    """A note for names the store holds no campaign of yet (a typo, or a campaign whose
    list is not imported yet: the binding holds either way)."""
    missing = sorted(set(campaigns or ()) - set(store.campaigns()))
    return f" (not in this store yet: {', '.join(missing)})" if missing else ""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="admin: everything; operator: runs, lists, opposition, prompts; "
                   "viewer: read only.")
@click.option("--campaign", "campaigns", multiple=True, help=CAMPAIGN_HELP)
@pass_ctx
def users_add(ctx: Ctx, name: str, role: str, campaigns: tuple[str, ...]) -> None:
    """Create a user; the password is read from the terminal (or stdin when piped)."""
    check_role(role)
    if not name.strip() or len(name) > 64 or any(c.isspace() for c in name):
        raise IvrError(f"NAME: {name!r}: use 1 to 64 characters without spaces")
    bound = bound_to(name, role, campaigns)
    store = ctx.store()
    if store.user_by_name(name) is not None:
        raise IvrError(f"user {name!r} exists already")
    password_hash = hash_password(read_password())
    try:  # another admin may add the same name while this one hashes
        store.add_user(name, role, password_hash, now(), actor=cli_actor(), campaigns=bound)
    except ValueError:
        raise IvrError(f"user {name!r} exists already") from None
    where = "" if bound is None else f", campaigns {shown(bound)}"
    console.print(f"user {name} added ({role}{where}){not_in_store(store, bound)}",
                  highlight=False)


@users.command("campaigns")
@click.argument("name")
@click.argument("campaigns", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Unbind NAME: every campaign.")
@pass_ctx
def users_campaigns(ctx: Ctx, name: str, campaigns: tuple[str, ...], every: bool) -> None:
    """Bind NAME to CAMPAIGNS alone, or to every campaign with --all, from its next request
    on (its sessions and tokens stay, and follow). Without either: show them."""
    store = ctx.store()
    user = known_user(store, name)
    if campaigns and every:
        raise IvrError("CAMPAIGNS: give campaigns or --all, not both")
    if not campaigns and not every:
        console.print(f"user {name}: {shown(user['campaigns'])}", highlight=False)
        return
    bound = None if every else bound_to(name, user["role"], campaigns)
    try:
        store.set_user_campaigns(name, bound, now(), actor=cli_actor())
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    console.print(f"user {name} now sees {shown(bound)}{not_in_store(store, bound)}",
                  highlight=False)


@users.command("token")
@click.argument("name")
@pass_ctx
def users_token(ctx: Ctx, name: str) -> None:
    """Issue an API token for NAME (sent as `Authorization: Bearer TOKEN`). It is printed
    once: the store keeps only its SHA-256."""
    store = ctx.store()
    if known_user(store, name)["disabled"]:
        raise IvrError(f"user {name!r} is disabled: enable it first")
    token = new_token()
    try:  # checked again in the store's transaction: another admin may disable NAME now
        issued = store.add_api_token(name, token_hash(token), now(), actor=cli_actor())
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    click.echo(token)  # plain stdout, one line, for scripts
    click.echo(f"token {issued} of {name}; revoke it with `ivr users revoke {name} {issued}`",
               err=True)


@users.command("tokens")
@click.argument("name")
@pass_ctx
def users_tokens(ctx: Ctx, name: str) -> None:
    """NAME's API tokens: id, the start of its SHA-256 (`printf %s TOKEN | sha256sum` tells
    which a token is), when issued, last used (noted once a minute) and revoked. A disabled
    user's tokens are inactive: none authenticates."""
    store = ctx.store()
    disabled = known_user(store, name)["disabled"]
    for t in store.api_tokens(name):
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else \
            "inactive (user disabled)" if disabled else "active"
        click.echo(f"{t['id']}	sha256:{t['token_hash'][:12]}	issued {t['created_at']}	"
                   f"last used {t['last_used_at'] or 'never'}	{state}")


# unknown options pass as arguments: `-1` reaches TOKEN_ID (its one-line error), not click
@users.command("revoke", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("token_id", required=False)
@click.option("--all", "every", is_flag=True, help="Revoke every token of NAME.")
@pass_ctx
def users_revoke(ctx: Ctx, name: str, token_id: str | None, every: bool) -> None:
    """Revoke NAME's API token TOKEN_ID (see `ivr users tokens NAME`), or --all: it stops
    working at once, for good. Sessions and the password are untouched."""
    if (token_id is None) == (not every):
        raise IvrError("TOKEN_ID: give one token's id (`ivr users tokens NAME`) or --all")
    store = ctx.store()
    known_user(store, name)
    one = None if token_id is None else parse_token_id(token_id, name)
    try:
        n = store.revoke_api_tokens(name, now(), one, actor=cli_actor())
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    if n == 0 and not every:
        raise not_active(str(token_id), name)
    console.print(f"{n} token(s) of {name} revoked", highlight=False)


@users.command("list")
@pass_ctx
def users_list(ctx: Ctx) -> None:
    """Every user, their role, whether they are disabled, and the campaigns they see (never
    a hash)."""
    for u in ctx.store().users():
        state = "disabled" if u["disabled"] else "enabled"
        click.echo(f"{u['name']}\t{u['role']}\t{state}\tsince {u['created_at']}\t"
                   f"{shown(u['campaigns'])}")


def last_admin(name: str, doing: str) -> IvrError:
    """Why and how, in one line: the console would have no one for an admin's actions."""
    return IvrError(f"user {name!r} is the only enabled admin: {doing} it leaves the console "
                    "none (GDPR export and erasure, the audit, users); make another user admin "
                    "first (`ivr users role NAME admin`) or give --force")


FORCE_HELP = "Even if NAME is the only enabled admin."


@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@pass_ctx
def users_disable(ctx: Ctx, name: str, enable: bool, force: bool) -> None:
    """Disable a user: no login, their sessions end and their API tokens are revoked (enabling
    the user again brings neither back: log in, issue new tokens). The only enabled admin is
    disabled only with --force."""
    store = ctx.store()
    user = known_user(store, name)
    if enable and user["disabled"]:
        # a token left unrevoked (a disable interrupted before its revocation, or a token
        # issued beside it by an older release) does not come back with the user
        store.revoke_api_tokens(name, now(), actor=cli_actor())
    try:
        store.set_user(name, disabled=not enable, keep_admin=not force)
    except LastAdmin:
        raise last_admin(name, "disabling") from None
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    if not enable:
        store.revoke_api_tokens(name, now(), actor=cli_actor())
    store.audit("user_enabled" if enable else "user_disabled", None, {"user": name}, now(),
                actor=cli_actor())
    console.print(f"user {name} {'enabled' if enable else 'disabled'}", highlight=False)


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--force", is_flag=True, help=FORCE_HELP)
@pass_ctx
def users_role(ctx: Ctx, name: str, role: str, force: bool) -> None:
    """Give NAME another role (admin, operator, viewer), from its next request on; its
    sessions and tokens stay. The only enabled admin is demoted only with --force."""
    store = ctx.store()
    was = known_user(store, name)["role"]
    if role == was:
        console.print(f"user {name} is {role} already", highlight=False)
        return
    try:
        store.set_user(name, role=role, keep_admin=not force)
    except LastAdmin:
        raise last_admin(name, "demoting") from None
    except ValueError as exc:
        raise IvrError(str(exc)) from None
    store.audit("user_role_changed", None, {"user": name, "role": role, "was": was}, now(),
                actor=cli_actor())
    console.print(f"user {name} is now {role} (was {was})", highlight=False)


@users.command("passwd")
@click.argument("name")
@pass_ctx
def users_passwd(ctx: Ctx, name: str) -> None:
    """Set a new password for NAME (terminal, or stdin when piped). Their console sessions
    end; their API tokens are separate credentials and stay (`ivr users revoke` ends them)."""
    store = ctx.store()
    known_user(store, name)
    store.set_user(name, password_hash=hash_password(read_password()))
    store.audit("user_password_changed", None, {"user": name}, now(), actor=cli_actor())
    console.print(f"password of {name} changed", highlight=False)
