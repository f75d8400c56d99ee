"""A console login hashes the password again when its stored hash was made with weaker argon2
parameters than today's (web_users.needs_rehash): before, nothing called it and such users kept
their weaker hashes for good. The user's other sessions stay; a password changed meanwhile
wins. Both backends (conftest.store)."""
from __future__ import annotations

from datetime import datetime, timezone

from argon2 import PasswordHasher

from ivr import web_users
from ivr.store import Store
from ivr.web.auth import check_password

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
WEAK = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def test_a_weak_hash_is_made_strong_at_the_next_login_and_the_sessions_stay(
        store: Store) -> None:
    store.add_user("vera", "viewer", WEAK.hash("viewer-password-1"), NOW)
    before = store.user_by_name("vera")
    assert before is not None and web_users.needs_rehash(before["password_hash"])
    assert check_password(store, "vera", "wrong-password-1") is None
    assert store.user_by_name("vera")["password_hash"] == before["password_hash"]  # type: ignore[index]
    assert check_password(store, "vera", "viewer-password-1") is not None
    after = store.user_by_name("vera")
    assert after is not None and after["password_hash"] != before["password_hash"]
    assert not web_users.needs_rehash(after["password_hash"])
    assert web_users.verify_password(after["password_hash"], "viewer-password-1")
    assert after["session_epoch"] == before["session_epoch"]  # nobody logged out by it
    assert check_password(store, "vera", "viewer-password-1") is not None  # and again
    assert store.user_by_name("vera")["password_hash"] == after["password_hash"]  # type: ignore[index]


def test_a_password_changed_meanwhile_is_not_overwritten(store: Store) -> None:
    old = WEAK.hash("viewer-password-1")
    store.add_user("vera", "viewer", old, NOW)
    store.set_user("vera", password_hash=web_users.hash_password("a-new-password-2"))
    assert not store.rehash_password("vera", old, web_users.hash_password("viewer-password-1"))
    assert check_password(store, "vera", "a-new-password-2") is not None
    assert check_password(store, "vera", "viewer-password-1") is None
