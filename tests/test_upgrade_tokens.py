"""Migration 20: the tokens of a user disabled under a release before schema 14 (no
`revoked_at` yet, so the disable revoked nothing) are revoked at upgrade, so enabling the user
brings none back (README: console users and tokens); other tokens are left as they were."""
from __future__ import annotations

from datetime import datetime, timezone

from conftest import Backend

from ivr.store.pg_schema import MIGRATIONS as PG_MIGRATIONS
from ivr.store.schema import MIGRATIONS

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
KEPT = "2026-01-05T09:00:00.000Z"  # a revocation made before the upgrade: kept as it is


def before_20(backend: Backend) -> None:
    """A store as a pre-14 release left it once upgraded to 19: alice disabled with her token
    unrevoked; bob enabled with his token; carol disabled, her token revoked on KEPT."""
    s = backend.open()
    for name in ("alice", "bob", "carol"):
        s.add_user(name, "operator", "x", NOW)
        s.add_api_token(name, f"hash-{name}", NOW)
    s.set_user("alice", disabled=True)
    s.set_user("carol", disabled=True)
    s.db.execute("UPDATE api_tokens SET revoked_at = NULL WHERE token_hash = 'hash-alice'")
    s.db.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_hash = 'hash-carol'", (KEPT,))
    if backend.url is None:
        s.db.execute("PRAGMA user_version = 19")
        s.db.conn.close()
    else:
        s.db.execute("DELETE FROM schema_version WHERE version >= 20")
        s.close()


def test_both_backends_have_migration_20() -> None:
    assert len(MIGRATIONS) == len(PG_MIGRATIONS) >= 20  # 20 here, later ones after it


def test_a_token_of_a_user_disabled_before_14_stays_revoked_once_enabled(
        backend: Backend) -> None:
    before_20(backend)
    s = backend.open()
    assert s.version == len(MIGRATIONS)
    revoked = {r["token_hash"]: r["revoked_at"] for r in s.q(
        "SELECT token_hash, revoked_at FROM api_tokens")}
    assert revoked["hash-alice"] is not None and revoked["hash-alice"].endswith("Z")
    assert revoked["hash-carol"] == KEPT and revoked["hash-bob"] is None
    s.set_user("alice", disabled=False)
    assert s.user_by_token("hash-alice", NOW) is None
    assert s.user_by_token("hash-bob", NOW)["name"] == "bob"
    # Run again (a store rolled back by hand): nothing changes, bob's token still works.
    if backend.url is None:
        s.db.execute("PRAGMA user_version = 19")
    else:
        s.db.execute("DELETE FROM schema_version WHERE version >= 20")
    again = backend.open()
    assert again.version == len(MIGRATIONS)
    assert {r["token_hash"]: r["revoked_at"] for r in again.q(
        "SELECT token_hash, revoked_at FROM api_tokens")} == revoked
    assert again.user_by_token("hash-bob", NOW)["name"] == "bob"
