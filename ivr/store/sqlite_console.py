"""The SQLite backend's part for the web console: run control, snapshots, users, API tokens,
the console's reads (campaigns, recent calls, calls per hour, contact pages, the audit log).

The console never reaches into a controller: it writes `run_control`, controllers read it every
tick and publish their snapshots into `run_snapshots` (ivr/campaign/run_control.py).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from collections.abc import Sequence
from typing import Any

from ivr.store.base import Row, token_use_to_note, utc
from ivr.store.sqlite_core import SQLiteCore, retryable
from ivr.store.user_scope import campaign_names, check_scope, read_campaigns, shown

log = logging.getLogger(__name__)

DESIRED = ("running", "paused", "stopped", "hard_stop")
ROLES = ("admin", "operator", "viewer")


def unset_marks(desired: str | None, ts: str, by: str | None) -> dict[str, Any]:
    """updated_at/updated_by of a run_control row a write creates: a pacing-only write
    creates it with no run state's mark ('' and NULL), so the console shows none set."""
    return {"ts0": ts, "by0": by} if desired is not None else {"ts0": "", "by0": None}


def check_desired(desired: str) -> None:
    if desired not in DESIRED:
        raise ValueError(f"desired: {desired!r} is not one of {', '.join(DESIRED)}")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")


class LastAdmin(ValueError):
    """set_user(keep_admin=True) refused: the change would leave no enabled admin."""


# The enabled admins, read inside set_user's transaction (PostgreSQL locks them: FOR UPDATE).
ADMINS_SQL = "SELECT name FROM users WHERE role = 'admin' AND disabled = 0"
NOTE_WAIT_MS = 20  # how long noting a token's use may wait for SQLite's write lock
NOTE_USE_SQL = "UPDATE api_tokens SET last_used_at = ? WHERE id = ?"


def keep_an_admin(name: str, admins: list[str], role: str | None,
                  disabled: bool | None) -> None:
    """Refuse (LastAdmin) to demote or disable `name` when it is the only enabled admin."""
    leaves = (role is not None and role != "admin") or bool(disabled)
    if leaves and admins == [name]:
        raise LastAdmin(f"user {name!r} is the only enabled admin")


def check_enabled(user_name: str, user: Row | None) -> Row:
    """add_api_token's user, read in its transaction: no token for a missing or disabled one
    (a token issued while another admin disabled the user came back with `--enable`)."""
    if user is None:
        raise ValueError(f"user {user_name!r} does not exist: add it with `ivr users add`")
    if user["disabled"]:
        raise ValueError(f"user {user_name!r} is disabled: enable it first")
    return user


_use_skips = [0]  # noting skipped so far (this process): the first is told at info


def token_use_skipped(token_id: int, exc: BaseException) -> None:
    """The request goes on without noting last_used_at (locked store, full disk, read-only
    server). Logged at info once, then at debug: a store busy for minutes would log at every
    request. The token itself is never logged, only its id."""
    _use_skips[0] += 1
    why = " ".join(str(exc).split()) or type(exc).__name__
    log.log(logging.INFO if _use_skips[0] == 1 else logging.DEBUG,
            "API token %s: its use was not noted (last_used_at), the request goes on: %s",
            token_id, why)


class ConsoleSQL(SQLiteCore):
    # -- run control ----------------------------------------------------------------------------
    def set_run_control(self, campaign: str, *, desired: str | None = None,
                        max_concurrent: int | None = None,
                        calls_per_second: float | None = None, by: str | None,
                        now: datetime) -> Row:
        """Upsert the campaign's desired state and pacing; a field left None keeps its value
        (pacing NULL = the config's). Audited with actor `by`. updated_at and updated_by are
        the desired state's last write: a pacing-only write leaves them, and a row it creates
        says `paused`, not `running`, so that saving the pacing never acts as a Start or a
        Stop for a standby run (run_control.begin; pacing is read by value every tick); its
        updated_at is '' and updated_by NULL until a run state is written (shown as none).
        The bounds of the pacing are the config's (run_control.check_pacing), checked by the
        caller; here only what no config allows is refused."""
        if desired is not None:
            check_desired(desired)
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent: {max_concurrent!r} must be at least 1")
        if calls_per_second is not None and not calls_per_second > 0:
            raise ValueError(f"calls_per_second: {calls_per_second!r} must be more than 0")
        with self.transaction():
            self.db.execute(
                "INSERT INTO run_control (campaign, desired, max_concurrent, calls_per_second, "
                "updated_at, updated_by) VALUES (:c, COALESCE(:d, 'paused'), :m, :r, :ts0, :by0) "
                "ON CONFLICT (campaign) DO UPDATE SET desired = COALESCE(:d, desired), "
                "max_concurrent = COALESCE(:m, max_concurrent), "
                "calls_per_second = COALESCE(:r, calls_per_second), "
                "updated_at = CASE WHEN :d IS NULL THEN updated_at ELSE :ts END, "
                "updated_by = CASE WHEN :d IS NULL THEN updated_by ELSE :by END",
                {"c": campaign, "d": desired, "m": max_concurrent, "r": calls_per_second,
                 "ts": utc(now), "by": by, **unset_marks(desired, utc(now), by)})
            self._audit("run_control", None, {
                "campaign": campaign, **{k: v for k, v in (
                    ("desired", desired), ("max_concurrent", max_concurrent),
                    ("calls_per_second", calls_per_second)) if v is not None}}, now, actor=by)
            row = self.run_control(campaign)
        assert row is not None
        return row

    def run_control(self, campaign: str) -> Row | None:
        return self._row("SELECT campaign, desired, max_concurrent, calls_per_second, "
                         "updated_at, updated_by FROM run_control WHERE campaign = ?",
                         (campaign,))

    def publish_snapshot(self, campaign: str, controller: str, snapshot: dict[str, Any],
                         now: datetime) -> None:
        """This controller's latest snapshot of the campaign (one row each, replaced)."""
        self.db.execute(
            "INSERT INTO run_snapshots (campaign, controller, at, snapshot) VALUES (?,?,?,?) "
            "ON CONFLICT (campaign, controller) DO UPDATE SET at = excluded.at, "
            "snapshot = excluded.snapshot",
            (campaign, controller, utc(now), json.dumps(snapshot, ensure_ascii=False)))

    def snapshots(self, campaign: str) -> list[Row]:
        """Every controller's latest snapshot of the campaign, the snapshot decoded."""
        rows = self._rows("SELECT campaign, controller, at, snapshot FROM run_snapshots "
                          "WHERE campaign = ? ORDER BY controller", (campaign,))
        for r in rows:
            r["snapshot"] = json.loads(r["snapshot"])
        return rows

    def fresh_snapshots(self, campaign: str, within_s: float, now: datetime) -> list[Row]:
        """The campaign's snapshots published within `within_s` seconds before `now` (this
        machine's clock: the controllers share it), decoded, as snapshots() gives them. A
        range of the index run_snapshots_at: the console reads this once a second, and the
        table keeps a row per past run (snapshots() decoded 50,000 of them in 1.3 s). The
        stamp is cut to the millisecond, so this holds every row the caller's exact age
        check keeps."""
        rows = self._rows("SELECT campaign, controller, at, snapshot FROM run_snapshots "
                          "WHERE campaign = ? AND at >= ? ORDER BY controller",
                          (campaign, utc(now - timedelta(seconds=within_s))))
        for r in rows:
            r["snapshot"] = json.loads(r["snapshot"])
        return rows

    # -- the console's reads --------------------------------------------------------------------
    def campaigns(self) -> list[str]:
        """Every campaign the store knows: bound lists, calls, run control."""
        return [r["campaign"] for r in self._rows(
            "SELECT campaign FROM campaign_contacts UNION SELECT campaign FROM calls "
            "UNION SELECT campaign FROM run_control ORDER BY 1")]

    def recent_calls(self, campaign: str, limit: int = 50) -> list[Row]:
        return self._rows(
            "SELECT id, number, attempt, node, controller, started_at, ended_at, outcome, keys, "
            "hangup_cause FROM calls WHERE campaign = ? ORDER BY id DESC LIMIT ?",
            (campaign, limit))

    def calls_per_hour(self, campaign: str) -> list[Row]:
        """Ended calls per hour of their start (UTC, 'YYYY-MM-DDTHH') and outcome."""
        return self._rows(
            "SELECT substr(started_at, 1, 13) AS hour, outcome, COUNT(*) AS n FROM calls "
            "WHERE campaign = ? AND outcome IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            (campaign,))

    def contacts_page(self, campaign: str, *, source: str | None = None,
                      status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        """The campaign's contacts (its bindings: the name its list gave, list, basis and
        progress in this campaign; an opposed number shows as opted_out), by contact id
        (b.contact_id, not k.id: the same value, but the index campaign_contacts_order gives
        it in order, no sort)."""
        return self._rows(
            "SELECT k.id, k.number, b.name, b.source, b.basis, b.acquired_on, "
            "CASE WHEN k.status = 'opted_out' THEN 'opted_out' ELSE b.status END AS status, "
            "b.bound_at FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE b.campaign = :c AND (:source IS NULL OR b.source = :source) "
            "AND (:status IS NULL OR (CASE WHEN k.status = 'opted_out' THEN 'opted_out' "
            "ELSE b.status END) = :status) ORDER BY b.contact_id LIMIT :limit OFFSET :offset",
            {"c": campaign, "source": source, "status": status, "limit": limit,
             "offset": offset})

    def lists_of(self, campaign: str) -> list[Row]:
        """The campaign's lists: source, basis, acquired_on, status, n."""
        return self._rows(
            "SELECT b.source, b.basis, b.acquired_on, CASE WHEN k.status = 'opted_out' "
            "THEN 'opted_out' ELSE b.status END AS status, COUNT(*) AS n "
            "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE b.campaign = ? GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4", (campaign,))

    # -- users and API tokens -------------------------------------------------------------------
    def add_user(self, name: str, role: str, password_hash: str, now: datetime,
                 actor: str | None = None, campaigns: Sequence[str] | None = None) -> int:
        """`campaigns`: the only ones the user sees (None: every campaign; user_scope)."""
        check_role(role)
        bound = campaign_names(campaigns)
        check_scope(name, role, bound)
        with self.transaction():
            if self._row("SELECT 1 AS x FROM users WHERE name = ?", (name,)):
                raise ValueError(f"user {name!r} exists already: change it with set_user")
            cur = self.db.execute("INSERT INTO users (name, role, password_hash, created_at) "
                                  "VALUES (?,?,?,?)", (name, role, password_hash, utc(now)))
            user_id = int(cur.lastrowid or 0)
            self._bind(user_id, bound)
            detail = {"user": name, "role": role, **({"campaigns": bound} if bound else {})}
            self._audit("user_added", None, detail, now, actor)
        return user_id

    def _bind(self, user_id: int, campaigns: list[str] | None) -> None:
        self.db.execute("DELETE FROM user_campaigns WHERE user_id = ?", (user_id,))
        for campaign in campaigns or ():
            self.db.execute("INSERT INTO user_campaigns (user_id, campaign) VALUES (?, ?)",
                            (user_id, campaign))

    def set_user_campaigns(self, name: str, campaigns: Sequence[str] | None, now: datetime,
                           actor: str | None = None) -> None:
        """Bind the user to `campaigns` alone, or to every campaign (None), from its next
        request on (sessions and tokens read the bindings at each one). Refused for an
        admin, read under the write lock (BEGIN IMMEDIATE)."""
        bound = campaign_names(campaigns)
        with self.transaction():
            user = self._row("SELECT id, role FROM users WHERE name = ?", (name,))
            if user is None:
                raise ValueError(f"user {name!r} does not exist: add it with `ivr users add`")
            check_scope(name, user["role"], bound)
            self._bind(user["id"], bound)
            self._audit("user_campaigns_changed", None, {"user": name, "campaigns": shown(bound)},
                        now, actor)

    def user_by_name(self, name: str) -> Row | None:
        """The user with its password hash (for login), or None."""
        return read_campaigns(self._row(
            "SELECT id, name, role, password_hash, created_at, disabled, session_epoch, "
            "(SELECT json_group_array(campaign) FROM (SELECT campaign FROM user_campaigns "
            "WHERE user_id = u.id ORDER BY campaign)) AS campaigns "  # user_scope: its JSON
            "FROM users u WHERE name = ?", (name,)))

    def set_user(self, name: str, *, role: str | None = None,
                 password_hash: str | None = None, disabled: bool | None = None,
                 keep_admin: bool = False) -> None:
        """A new password or a disable also ends the user's sessions (session_epoch).
        keep_admin: refuse (LastAdmin) a demotion or disable of the only enabled admin,
        judged in this transaction (BEGIN IMMEDIATE: two admins cannot both pass)."""
        if role is not None:
            check_role(role)
        ends = password_hash is not None or bool(disabled)
        with self.transaction():
            if role is not None:  # read under the write lock: a binding made meanwhile counts
                check_scope(name, role, self._bound(name))
            if keep_admin:
                keep_an_admin(name, [r["name"] for r in self._rows(ADMINS_SQL)], role,
                              disabled)
            cur = self.db.execute(
                "UPDATE users SET role = COALESCE(?, role), "
                "password_hash = COALESCE(?, password_hash), disabled = COALESCE(?, disabled), "
                "session_epoch = session_epoch + ? WHERE name = ?",
                (role, password_hash, None if disabled is None else int(disabled), int(ends),
                 name))
            if cur.rowcount == 0:
                raise ValueError(f"user {name!r} does not exist: add it with `ivr users add`")

    def _bound(self, name: str) -> list[str]:
        return [r["campaign"] for r in self._rows(
            "SELECT b.campaign FROM user_campaigns b JOIN users u ON u.id = b.user_id "
            "WHERE u.name = ?", (name,))]

    def rehash_password(self, name: str, old_hash: str, new_hash: str) -> bool:
        """The same password hashed again (stronger parameters), only if the hash is still
        `old_hash` (a new password set meanwhile wins); the sessions stay (no epoch bump)."""
        with self.transaction():
            cur = self.db.execute("UPDATE users SET password_hash = ? WHERE name = ? "
                                  "AND password_hash = ?", (new_hash, name, old_hash))
            return cur.rowcount == 1

    def end_sessions(self, name: str) -> None:
        """Every console session of `name` opened so far stops authenticating (logout)."""
        with self.transaction():
            self.db.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE name = ?",
                            (name,))

    def users(self) -> list[Row]:
        return [read_campaigns(r) for r in self._rows(
            "SELECT id, name, role, created_at, disabled, (SELECT json_group_array(campaign) "
            "FROM (SELECT campaign FROM user_campaigns WHERE user_id = u.id ORDER BY campaign)) "
            "AS campaigns FROM users u ORDER BY name")]

    def add_api_token(self, user_name: str, token_hash: str, now: datetime,
                      actor: str | None = None) -> int:
        """The new token's id: this row's, not the user's latest (another may be issued).
        Refused for a disabled user, read under the write lock (BEGIN IMMEDIATE): a disable
        committed before this insert is seen, one after it revokes this token."""
        with self.transaction():
            user = check_enabled(user_name, self._row(
                "SELECT id, disabled FROM users WHERE name = ?", (user_name,)))
            cur = self.db.execute("INSERT INTO api_tokens (user_id, token_hash, created_at) "
                                  "VALUES (?,?,?)", (user["id"], token_hash, utc(now)))
            token_id = int(cur.lastrowid or 0)
            self._audit("api_token_issued", None, {"user": user_name}, now, actor)
        return token_id

    def api_tokens(self, user_name: str) -> list[Row]:
        """The user's tokens, oldest first: id, hash, issued, last used, revoked (or None)."""
        return self._rows("SELECT t.id, t.token_hash, t.created_at, t.last_used_at, "
                          "t.revoked_at FROM api_tokens t JOIN users u ON u.id = t.user_id "
                          "WHERE u.name = ? ORDER BY t.id", (user_name,))

    def revoke_api_tokens(self, user_name: str, now: datetime,
                          token_id: int | None = None, actor: str | None = None) -> int:
        """Revoke the user's token `token_id`, or all their tokens (None); how many were."""
        with self.transaction():
            user = self._row("SELECT id FROM users WHERE name = ?", (user_name,))
            if user is None:
                raise ValueError(f"user {user_name!r} does not exist")
            cur = self.db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL "
                "AND (? IS NULL OR id = ?)", (utc(now), user["id"], token_id, token_id))
            if cur.rowcount:
                self._audit("api_token_revoked", None,
                            {"user": user_name, "token": token_id or "all", "n": cur.rowcount},
                            now, actor)
            return cur.rowcount

    def user_by_token(self, token_hash: str, now: datetime) -> Row | None:
        """The enabled user holding this unrevoked token (its hash), or None; notes its use."""
        row = self._row("SELECT u.id, u.name, u.role, u.created_at, u.disabled, t.id AS token_id, "
                        "t.last_used_at, (SELECT json_group_array(campaign) FROM (SELECT campaign "
                        "FROM user_campaigns WHERE user_id = u.id ORDER BY campaign)) AS campaigns "
                        "FROM api_tokens t JOIN users u ON u.id = t.user_id "
                        "WHERE t.token_hash = ? AND u.disabled = 0 AND t.revoked_at IS NULL",
                        (token_hash,))
        if row is None:
            return None
        token_id, last = row.pop("token_id"), row.pop("last_used_at")
        if token_use_to_note(last, now):
            self._note_token_use(token_id, now)
        return read_campaigns(row)

    def _note_token_use(self, token_id: int, now: datetime) -> None:
        """Best effort, waiting NOTE_WAIT_MS at most for the write lock, on a connection of its
        own: with the store's busy timeout (30 s under `ivr web`) a read by token waited for
        any writer, then failed (500). An in-memory store has no other writer."""
        try:
            if self.path is None:
                self.db.execute(NOTE_USE_SQL, (utc(now), token_id))
                return
            with closing(sqlite3.connect(str(self.path), timeout=NOTE_WAIT_MS / 1000,
                                         isolation_level=None)) as conn:
                conn.execute(NOTE_USE_SQL, (utc(now), token_id))
        except sqlite3.OperationalError as exc:  # locked, full, I/O, read-only file
            name = getattr(exc, "sqlite_errorname", "") or ""
            if not (retryable(exc) or name.startswith("SQLITE_READONLY")):
                raise
            token_use_skipped(token_id, exc)

    def change_marker(self) -> str:
        """Differs from the last value this store gave once anything was committed since, by
        any connection (data_version) or this one (total_changes): a cache keyed by it is
        never stale. Cheap: no table is read."""
        version = self._row("PRAGMA data_version")
        assert version is not None
        return f"{version['data_version']}.{self.db.conn.total_changes}"

    # -- the audit log --------------------------------------------------------------------------
    def audit_log(self, limit: int = 100) -> list[Row]:
        """The latest audit rows, newest first, the detail decoded."""
        rows = self._rows("SELECT id, at, action, actor, subject_hash, detail FROM audit "
                          "ORDER BY id DESC LIMIT ?", (limit,))
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
        return rows

    def audit_details(self, action: str) -> list[dict[str, Any]]:
        """The decoded detail of every audit row of `action`, oldest first (few: e.g. one
        `run_rules` per run start)."""
        return [json.loads(r["detail"]) if r["detail"] else {} for r in self._rows(
            "SELECT detail FROM audit WHERE action = ? ORDER BY id", (action,))]
