"""The PostgreSQL backend's part for the web console (twin of sqlite_console.py): run control,
snapshots, users, API tokens, the console's reads (campaigns, recent calls, calls per hour,
contact pages, the audit log). Same rows as SQLite's; text ordered with COLLATE "C" as SQLite
orders it. The checks of values (desired states, roles) are sqlite_console's, shared.
"""
from __future__ import annotations

import json
from datetime import datetime
from collections.abc import Sequence
from typing import Any

from ivr.store.base import Row, token_use_to_note, utc
from ivr.store.pg_core import STORE_ERRORS, PgCore
from ivr.store.user_scope import campaign_names, check_scope, read_campaigns, shown
from ivr.store.sqlite_console import (NOTE_WAIT_MS, check_desired, check_enabled,
                                      check_role, keep_an_admin, token_use_skipped,
                                      unset_marks)

# sqlite_console.ADMINS_SQL, locked: two admins demoting each other cannot both pass.
ADMINS_FOR_UPDATE_SQL = ("SELECT name FROM users WHERE role = 'admin' AND disabled = 0 "
                         "ORDER BY id FOR UPDATE")


class PgConsoleSQL(PgCore):
    # -- run control ----------------------------------------------------------------------------
    def set_run_control(self, campaign: str, *, desired: str | None = None,
                        max_concurrent: int | None = None,
                        calls_per_second: float | None = None, by: str | None,
                        now: datetime) -> Row:
        """Upsert the campaign's desired state and pacing; a field left None keeps its value
        (pacing NULL = the config's). Audited with actor `by`. updated_at/updated_by are the
        desired state's last write; a pacing-only write leaves them and a row it creates says
        `paused` (sqlite_console.py says why)."""
        if desired is not None:
            check_desired(desired)
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent: {max_concurrent!r} must be at least 1")
        if calls_per_second is not None and not calls_per_second > 0:
            raise ValueError(f"calls_per_second: {calls_per_second!r} must be more than 0")
        with self.transaction():
            self._exec(
                "INSERT INTO run_control (campaign, desired, max_concurrent, calls_per_second, "
                "updated_at, updated_by) VALUES (%(c)s, COALESCE(%(d)s, 'paused'), %(m)s, "
                "%(r)s, %(ts0)s, %(by0)s) ON CONFLICT (campaign) DO UPDATE SET "
                "desired = COALESCE(%(d)s, run_control.desired), "
                "max_concurrent = COALESCE(%(m)s, run_control.max_concurrent), "
                "calls_per_second = COALESCE(%(r)s, run_control.calls_per_second), "
                "updated_at = CASE WHEN %(d)s::text IS NULL THEN run_control.updated_at "
                "ELSE %(ts)s END, updated_by = CASE WHEN %(d)s::text IS NULL THEN "
                "run_control.updated_by ELSE %(by)s END",
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
                         "updated_at, updated_by FROM run_control WHERE campaign = %(c)s",
                         {"c": campaign})

    def publish_snapshot(self, campaign: str, controller: str, snapshot: dict[str, Any],
                         now: datetime) -> None:
        """This controller's latest snapshot of the campaign (one row each, replaced). `at` is
        the server's clock, as the heartbeats (pg_controllers): controllers on other machines
        need not agree on the time, and one whose clock lagged the console's by STALE_S
        vanished from it while it dialled. `now` (the controller's) is not used here; the
        snapshot's own times stay the controller's."""
        self._exec(
            "INSERT INTO run_snapshots (campaign, controller, at, snapshot) VALUES (%(c)s, "
            "%(k)s, to_char(clock_timestamp() AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), %(s)s) ON CONFLICT (campaign, controller) "
            "DO UPDATE SET at = excluded.at, snapshot = excluded.snapshot",
            {"c": campaign, "k": controller, "s": json.dumps(snapshot, ensure_ascii=False)})

    def snapshots(self, campaign: str) -> list[Row]:
        """Every controller's latest snapshot of the campaign, the snapshot decoded, and its
        age in seconds on the server's clock (`age_s`: the console judges freshness by it,
        never by its own clock against the server's stamp)."""
        rows = self._rows("SELECT campaign, controller, at, snapshot, EXTRACT(EPOCH FROM "
                          "clock_timestamp() - at::timestamptz)::float8 AS age_s "
                          "FROM run_snapshots WHERE campaign = %(c)s "
                          "ORDER BY controller COLLATE \"C\"", {"c": campaign})
        for r in rows:
            r["snapshot"] = json.loads(r["snapshot"])
        return rows

    def fresh_snapshots(self, campaign: str, within_s: float, now: datetime) -> list[Row]:
        """The campaign's snapshots published within `within_s` seconds on the server's clock
        (the one that stamped them; `now` is not used), as snapshots() gives them, age_s
        included. A range of the index run_snapshots_at (the bound is computed once, in the
        sub-select: clock_timestamp() in the condition itself is volatile and no index bound);
        the bound is read before any row's age, so this holds every row aged within_s."""
        rows = self._rows("SELECT campaign, controller, at, snapshot, EXTRACT(EPOCH FROM "
                          "clock_timestamp() - at::timestamptz)::float8 AS age_s "
                          "FROM run_snapshots WHERE campaign = %(c)s AND at >= (SELECT "
                          "to_char((clock_timestamp() - make_interval(secs => %(s)s)) AT TIME "
                          "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')) "
                          "ORDER BY controller COLLATE \"C\"", {"c": campaign, "s": within_s})
        for r in rows:
            r["snapshot"] = json.loads(r["snapshot"])
        return rows

    # -- the console's reads --------------------------------------------------------------------
    def campaigns(self) -> list[str]:
        """Every campaign the store knows: bound lists, calls, run control. The distinct
        names of the two big tables are walked through their campaign indexes, one probe per
        name (PostgreSQL has no skip scan): a UNION of the tables read 300,000 calls and
        100,000 bindings, 270 ms at each upload (the console asks again after one)."""
        return [r["campaign"] for r in self._rows(
            "WITH RECURSIVE a AS (SELECT min(campaign) AS c FROM calls UNION ALL "
            "SELECT (SELECT min(campaign) FROM calls WHERE campaign > a.c) FROM a "
            "WHERE a.c IS NOT NULL), b AS (SELECT min(campaign) AS c FROM campaign_contacts "
            "UNION ALL SELECT (SELECT min(campaign) FROM campaign_contacts WHERE campaign > b.c) "
            "FROM b WHERE b.c IS NOT NULL) "
            "SELECT campaign FROM (SELECT c AS campaign FROM a UNION SELECT c FROM b UNION "
            "SELECT campaign FROM run_control) u WHERE campaign IS NOT NULL "
            "ORDER BY campaign COLLATE \"C\"")]

    def recent_calls(self, campaign: str, limit: int = 50) -> list[Row]:
        return self._rows(
            "SELECT id, number, attempt, node, controller, started_at, ended_at, outcome, keys, "
            "hangup_cause FROM calls WHERE campaign = %(c)s ORDER BY id DESC LIMIT %(n)s",
            {"c": campaign, "n": limit})

    def calls_per_hour(self, campaign: str) -> list[Row]:
        """Ended calls per hour of their start (UTC, 'YYYY-MM-DDTHH') and outcome."""
        return self._rows(
            "SELECT substr(started_at, 1, 13) AS hour, outcome, COUNT(*) AS n FROM calls "
            "WHERE campaign = %(c)s AND outcome IS NOT NULL GROUP BY 1, 2 "
            "ORDER BY substr(started_at, 1, 13) COLLATE \"C\", outcome COLLATE \"C\"",
            {"c": campaign})

    def contacts_page(self, campaign: str, *, source: str | None = None,
                      status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        """The campaign's contacts (its bindings: the name its list gave, list, basis and
        progress in this campaign; an opposed number shows as opted_out), by contact id
        (b.contact_id, not k.id: the same value, but the index campaign_contacts_order gives
        it in order, no sort).
        Unfiltered, the offset is counted in the index alone (an index-only scan) and only the
        page is joined: joining every skipped row took 100-140 ms at offset 50,000."""
        p = {"c": campaign, "source": source, "status": status, "limit": limit,
             "offset": offset}
        if source is None and status is None:
            return self._rows(
                "SELECT k.id, k.number, b.name, b.source, b.basis, b.acquired_on, "
                "CASE WHEN k.status = 'opted_out' THEN 'opted_out' ELSE b.status END AS "
                "status, b.bound_at FROM (SELECT contact_id FROM campaign_contacts "
                "WHERE campaign = %(c)s ORDER BY contact_id LIMIT %(limit)s OFFSET %(offset)s) "
                "p JOIN campaign_contacts b ON b.contact_id = p.contact_id AND "
                "b.campaign = %(c)s JOIN contacts k ON k.id = b.contact_id "
                "ORDER BY b.contact_id", p)
        return self._rows(
            "SELECT k.id, k.number, b.name, b.source, b.basis, b.acquired_on, "
            "CASE WHEN k.status = 'opted_out' THEN 'opted_out' ELSE b.status END AS status, "
            "b.bound_at FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE b.campaign = %(c)s AND (%(source)s::text IS NULL OR b.source = %(source)s) "
            "AND (%(status)s::text IS NULL OR (CASE WHEN k.status = 'opted_out' THEN "
            "'opted_out' ELSE b.status END) = %(status)s) ORDER BY b.contact_id "
            "LIMIT %(limit)s OFFSET %(offset)s", p)

    def lists_of(self, campaign: str) -> list[Row]:
        """The campaign's lists: source, basis, acquired_on, status, n."""
        return self._rows(
            "SELECT b.source, b.basis, b.acquired_on, CASE WHEN k.status = 'opted_out' "
            "THEN 'opted_out' ELSE b.status END AS status, COUNT(*) AS n "
            "FROM campaign_contacts b JOIN contacts k ON k.id = b.contact_id "
            "WHERE b.campaign = %(c)s GROUP BY 1, 2, 3, 4 ORDER BY b.source COLLATE \"C\", "
            "b.basis COLLATE \"C\" NULLS FIRST, b.acquired_on COLLATE \"C\" NULLS FIRST, "
            "(CASE WHEN k.status = 'opted_out' THEN 'opted_out' ELSE b.status END) "
            "COLLATE \"C\"", {"c": campaign})

    # -- users and API tokens -------------------------------------------------------------------
    def add_user(self, name: str, role: str, password_hash: str, now: datetime,
                 actor: str | None = None, campaigns: Sequence[str] | None = None) -> int:
        """`campaigns`: the only ones the user sees (None: every campaign; user_scope)."""
        check_role(role)
        bound = campaign_names(campaigns)
        check_scope(name, role, bound)
        with self.transaction():  # ON CONFLICT: two admins adding the name at once
            row = self._row("INSERT INTO users (name, role, password_hash, created_at) "
                            "VALUES (%(n)s, %(r)s, %(h)s, %(ts)s) "
                            "ON CONFLICT (name) DO NOTHING RETURNING id",
                            {"n": name, "r": role, "h": password_hash, "ts": utc(now)})
            if row is None:
                raise ValueError(f"user {name!r} exists already: change it with set_user")
            self._bind(int(row["id"]), bound)
            detail = {"user": name, "role": role, **({"campaigns": bound} if bound else {})}
            self._audit("user_added", None, detail, now, actor)
        return int(row["id"])

    def _bind(self, user_id: int, campaigns: list[str] | None) -> None:
        self._exec("DELETE FROM user_campaigns WHERE user_id = %(u)s", {"u": user_id})
        for campaign in campaigns or ():
            self._exec("INSERT INTO user_campaigns (user_id, campaign) VALUES (%(u)s, %(c)s)",
                       {"u": user_id, "c": campaign})

    def set_user_campaigns(self, name: str, campaigns: Sequence[str] | None, now: datetime,
                           actor: str | None = None) -> None:
        """sqlite_console's; the user's row locked (FOR UPDATE) against a role change."""
        bound = campaign_names(campaigns)
        with self.transaction():
            user = self._row("SELECT id, role FROM users WHERE name = %(n)s FOR UPDATE",
                             {"n": name})
            if user is None:
                raise ValueError(f"user {name!r} does not exist: add it with `ivr users add`")
            check_scope(name, user["role"], bound)
            self._bind(int(user["id"]), bound)
            self._audit("user_campaigns_changed", None, {"user": name, "campaigns": shown(bound)},
                        now, actor)

    def user_by_name(self, name: str) -> Row | None:
        """The user with its password hash (for login), or None."""
        return read_campaigns(self._row(
            "SELECT id, name, role, password_hash, created_at, disabled, session_epoch, "
            "(SELECT json_agg(campaign ORDER BY campaign COLLATE \"C\")::text FROM "
            "user_campaigns WHERE user_id = u.id) AS campaigns "  # user_scope: its JSON
            "FROM users u WHERE name = %(n)s", {"n": name}))

    def set_user(self, name: str, *, role: str | None = None,
                 password_hash: str | None = None, disabled: bool | None = None,
                 keep_admin: bool = False) -> None:
        """A new password or a disable also ends the user's sessions (session_epoch).
        keep_admin: refuse (LastAdmin) a demotion or disable of the only enabled admin; the
        enabled admins are locked (FOR UPDATE) so that two admins cannot both pass."""
        if role is not None:
            check_role(role)
        with self.transaction():
            if role is not None:  # the user's row locked: a binding made meanwhile counts
                self._exec("SELECT 1 FROM users WHERE name = %(n)s FOR UPDATE", {"n": name})
                check_scope(name, role, self._bound(name))
            if keep_admin:
                admins = self._rows(ADMINS_FOR_UPDATE_SQL)
                keep_an_admin(name, [r["name"] for r in admins], role, disabled)
            changed = self._exec(
                "UPDATE users SET role = COALESCE(%(r)s, role), "
                "password_hash = COALESCE(%(h)s, password_hash), "
                "disabled = COALESCE(%(d)s, disabled), session_epoch = session_epoch + %(e)s "
                "WHERE name = %(n)s",
                {"r": role, "h": password_hash,
                 "d": None if disabled is None else int(disabled),
                 "e": int(password_hash is not None or bool(disabled)), "n": name})
            if changed == 0:
                raise ValueError(f"user {name!r} does not exist: add it with `ivr users add`")

    def _bound(self, name: str) -> list[str]:
        return [r["campaign"] for r in self._rows(
            "SELECT b.campaign FROM user_campaigns b JOIN users u ON u.id = b.user_id "
            "WHERE u.name = %(n)s", {"n": name})]

    def rehash_password(self, name: str, old_hash: str, new_hash: str) -> bool:
        """sqlite_console's: only if the hash is still `old_hash`; sessions stay."""
        return self._exec("UPDATE users SET password_hash = %(new)s WHERE name = %(n)s "
                          "AND password_hash = %(old)s",
                          {"new": new_hash, "n": name, "old": old_hash}) == 1

    def end_sessions(self, name: str) -> None:
        """Every console session of `name` opened so far stops authenticating (logout)."""
        with self.transaction():
            self._exec("UPDATE users SET session_epoch = session_epoch + 1 WHERE name = %(n)s",
                       {"n": name})

    def users(self) -> list[Row]:
        return [read_campaigns(r) for r in self._rows(
            "SELECT id, name, role, created_at, disabled, (SELECT json_agg(campaign ORDER BY "
            "campaign COLLATE \"C\")::text FROM user_campaigns WHERE user_id = u.id) AS "
            "campaigns FROM users u ORDER BY name COLLATE \"C\"")]

    def add_api_token(self, user_name: str, token_hash: str, now: datetime,
                      actor: str | None = None) -> int:
        """The new token's id: this row's, not the user's latest (another may be issued).
        Refused for a disabled user, its row locked (FOR UPDATE): a disable committed first
        is seen, one waiting for this insert revokes the token after it."""
        with self.transaction():
            user = check_enabled(user_name, self._row(
                "SELECT id, disabled FROM users WHERE name = %(n)s FOR UPDATE",
                {"n": user_name}))
            row = self._row("INSERT INTO api_tokens (user_id, token_hash, created_at) "
                            "VALUES (%(u)s, %(h)s, %(ts)s) RETURNING id",
                            {"u": user["id"], "h": token_hash, "ts": utc(now)})
            self._audit("api_token_issued", None, {"user": user_name}, now, actor)
        return int(row["id"]) if row else 0

    def api_tokens(self, user_name: str) -> list[Row]:
        """The user's tokens, oldest first: id, hash, issued, last used, revoked (or None)."""
        return self._rows("SELECT t.id, t.token_hash, t.created_at, t.last_used_at, "
                          "t.revoked_at FROM api_tokens t JOIN users u ON u.id = t.user_id "
                          "WHERE u.name = %(n)s ORDER BY t.id", {"n": user_name})

    def revoke_api_tokens(self, user_name: str, now: datetime,
                          token_id: int | None = None, actor: str | None = None) -> int:
        """Revoke the user's token `token_id`, or all their tokens (None); how many were."""
        with self.transaction():
            user = self._row("SELECT id FROM users WHERE name = %(n)s", {"n": user_name})
            if user is None:
                raise ValueError(f"user {user_name!r} does not exist")
            n = self._exec(
                "UPDATE api_tokens SET revoked_at = %(ts)s WHERE user_id = %(u)s "
                "AND revoked_at IS NULL AND (%(t)s::bigint IS NULL OR id = %(t)s::bigint)",
                {"ts": utc(now), "u": user["id"], "t": token_id})
            if n:
                self._audit("api_token_revoked", None,
                            {"user": user_name, "token": token_id or "all", "n": n}, now, actor)
            return n

    def user_by_token(self, token_hash: str, now: datetime) -> Row | None:
        """The enabled user holding this unrevoked token (its hash), or None; notes its use."""
        row = self._row("SELECT u.id, u.name, u.role, u.created_at, u.disabled, "
                        "t.id AS token_id, t.last_used_at, (SELECT json_agg(campaign ORDER BY "
                        "campaign COLLATE \"C\")::text FROM user_campaigns WHERE user_id = u.id) "
                        "AS campaigns FROM api_tokens t "
                        "JOIN users u ON u.id = t.user_id WHERE t.token_hash = %(h)s "
                        "AND u.disabled = 0 AND t.revoked_at IS NULL", {"h": token_hash})
        if row is None:
            return None
        token_id, last = row.pop("token_id"), row.pop("last_used_at")
        if token_use_to_note(last, now):
            self._note_token_use(token_id, now)
        return read_campaigns(row)

    def _note_token_use(self, token_id: int, now: datetime) -> None:
        """Best effort, waiting NOTE_WAIT_MS at most for the row (a revoke, another console
        noting it): the read by token must not wait for, or fail on, this write."""
        try:
            with self.transaction():
                self._exec("SELECT set_config('lock_timeout', %(t)s, true)",
                           {"t": f"{NOTE_WAIT_MS}ms"})
                self._exec("UPDATE api_tokens SET last_used_at = %(ts)s WHERE id = %(id)s",
                           {"ts": utc(now), "id": token_id})
        except STORE_ERRORS as exc:  # lock timeout, full disk, read-only server
            token_use_skipped(token_id, exc)

    def change_marker(self) -> str:
        """Differs from an earlier value once any transaction has committed since: two equal
        snapshots (xmin:xmax:in-progress list) see the same committed transactions. Any
        database of the cluster moves it (a needless recompute, never a stale value)."""
        row = self._row("SELECT pg_current_snapshot()::text AS s")
        assert row is not None
        return str(row["s"])

    # -- the audit log --------------------------------------------------------------------------
    def audit_log(self, limit: int = 100) -> list[Row]:
        """The latest audit rows, newest first, the detail decoded."""
        rows = self._rows("SELECT id, at, action, actor, subject_hash, detail FROM audit "
                          "ORDER BY id DESC LIMIT %(n)s", {"n": limit})
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
        return rows

    def audit_details(self, action: str) -> list[dict[str, Any]]:
        """The decoded detail of every audit row of `action`, oldest first (few: e.g. one
        `run_rules` per run start)."""
        return [json.loads(r["detail"]) if r["detail"] else {} for r in self._rows(
            "SELECT detail FROM audit WHERE action = %(a)s ORDER BY id", {"a": action})]
