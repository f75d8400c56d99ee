"""The store's console part (ivr/store/sqlite_console.py): run control, snapshots, the console's
reads, users and API tokens, the audit's actor."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ivr.store import Store

from conftest import CALLER_ID, add_contact, attempt

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
A, B, C = "+33199000001", "+33199000002", "+33199000003"


def test_run_control_upserts_and_keeps_what_is_not_given(store: Store) -> None:
    assert store.run_control("c1") is None
    row = store.set_run_control("c1", max_concurrent=5, by="alice", now=T0)
    # a pacing alone is no Start: its new row says paused (test_standby_pacing.py)
    assert row["desired"] == "paused" and row["max_concurrent"] == 5
    assert row["calls_per_second"] is None
    # no run state written yet: no mark (the console shows none); the pacing's writer is audited
    assert (row["updated_at"], row["updated_by"]) == ("", None)
    assert store.audit_log(limit=1)[0]["actor"] == "alice"
    row = store.set_run_control("c1", desired="paused", by="bob", now=T0 + timedelta(seconds=1))
    assert (row["desired"], row["max_concurrent"], row["updated_by"]) == ("paused", 5, "bob")
    assert row["updated_at"] == "2026-03-02T10:00:01.000Z"
    row = store.set_run_control("c1", calls_per_second=2.5, by=None, now=T0)
    assert (row["desired"], row["max_concurrent"], row["calls_per_second"]) == ("paused", 5, 2.5)
    assert store.run_control("c2") is None  # per campaign


def test_run_control_is_audited_with_its_actor(store: Store) -> None:
    store.set_run_control("c1", desired="stopped", by="alice", now=T0)
    last = store.audit_log(limit=1)[0]
    assert (last["action"], last["actor"]) == ("run_control", "alice")
    assert last["detail"] == {"campaign": "c1", "desired": "stopped"}


@pytest.mark.parametrize("kw, field", [({"desired": "go"}, "desired"),
                                       ({"max_concurrent": 0}, "max_concurrent"),
                                       ({"calls_per_second": 0.0}, "calls_per_second")])
def test_run_control_refuses_nonsense_naming_the_field(store: Store, kw: dict, field: str
                                                      ) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        store.set_run_control("c1", by="x", now=T0, **kw)
    assert store.run_control("c1") is None and store.audit_log() == []


def test_snapshots_one_row_per_controller_replaced(store: Store) -> None:
    store.publish_snapshot("c1", "ctl-a", {"seq": 1, "status": "running"}, T0)
    store.publish_snapshot("c1", "ctl-a", {"seq": 2, "status": "paused"}, T0)
    store.publish_snapshot("c1", "ctl-b", {"seq": 1}, T0)
    store.publish_snapshot("c2", "ctl-a", {"seq": 9}, T0)
    rows = store.snapshots("c1")
    assert [(r["controller"], r["snapshot"]) for r in rows] == [
        ("ctl-a", {"seq": 2, "status": "paused"}), ("ctl-b", {"seq": 1})]


def test_campaigns_recent_calls_and_calls_per_hour(store: Store) -> None:
    a = add_contact(store, A, at=T0, campaigns=("bound",))
    b = add_contact(store, B, at=T0, campaigns=())
    store.set_run_control("controlled", by=None, now=T0)
    first = attempt(store, a, "called", CALLER_ID, T0)
    store.finish_unanswered(first["id"], "busy", "17", T0 + timedelta(seconds=5), None)
    second = attempt(store, b, "called", CALLER_ID, T0 + timedelta(hours=1))
    assert store.campaigns() == ["bound", "called", "controlled"]
    recent = store.recent_calls("called")
    assert [r["id"] for r in recent] == [second["id"], first["id"]]  # newest first
    assert set(recent[0]) == {"id", "number", "attempt", "node", "controller", "started_at",
                              "ended_at", "outcome", "keys", "hangup_cause"}
    assert recent[1]["outcome"] == "busy" and recent[1]["hangup_cause"] == "17"
    assert store.recent_calls("called", limit=1)[0]["id"] == second["id"]
    assert store.calls_per_hour("called") == [{"hour": "2026-03-02T10", "outcome": "busy",
                                               "n": 1}]  # the open call is not counted yet


def test_contacts_page_and_lists_of(store: Store) -> None:
    add_contact(store, A, at=T0, source="s1", basis="consent", campaigns=("c1",))
    add_contact(store, B, at=T0, source="s1", basis="consent", campaigns=("c1",))
    add_contact(store, C, at=T0, source="s2", campaigns=("c1", "c2"))
    store.add_optout(B, "ivr", T0)
    page = store.contacts_page("c1")
    assert [(r["number"], r["source"], r["status"]) for r in page] == [
        (A, "s1", "pending"), (B, "s1", "opted_out"), (C, "s2", "pending")]
    assert [r["number"] for r in store.contacts_page("c1", source="s1", status="pending")] == [A]
    assert [r["number"] for r in store.contacts_page("c1", limit=1, offset=2)] == [C]
    assert [r["number"] for r in store.contacts_page("c2")] == [C]
    assert store.lists_of("c1") == [
        {"source": "s1", "basis": "consent", "acquired_on": None, "status": "opted_out", "n": 1},
        {"source": "s1", "basis": "consent", "acquired_on": None, "status": "pending", "n": 1},
        {"source": "s2", "basis": None, "acquired_on": None, "status": "pending", "n": 1}]


def test_users_never_show_their_hash_and_names_are_unique(store: Store) -> None:
    uid = store.add_user("alice", "admin", "$argon2id$x", T0)
    assert uid > 0
    with pytest.raises(ValueError, match="exists already"):
        store.add_user("alice", "viewer", "$argon2id$y", T0)
    with pytest.raises(ValueError, match="^role: "):
        store.add_user("bob", "root", "$argon2id$y", T0)
    assert store.users() == [{"id": uid, "name": "alice", "role": "admin",
                              "created_at": "2026-03-02T10:00:00.000Z", "disabled": 0,
                              "campaigns": None}]  # every campaign (test_web_campaign_scope)
    assert store.user_by_name("alice")["password_hash"] == "$argon2id$x"
    assert store.user_by_name("nobody") is None
    store.set_user("alice", role="viewer", disabled=True)
    got = store.user_by_name("alice")
    assert (got["role"], got["disabled"], got["password_hash"]) == ("viewer", 1, "$argon2id$x")
    store.set_user("alice", password_hash="$argon2id$z", disabled=False)
    got = store.user_by_name("alice")
    assert (got["role"], got["disabled"], got["password_hash"]) == ("viewer", 0, "$argon2id$z")
    with pytest.raises(ValueError, match="does not exist"):
        store.set_user("nobody", role="viewer")


def test_api_tokens_find_their_user_and_note_their_use(store: Store) -> None:
    store.add_user("bot", "operator", "$argon2id$x", T0)
    store.add_api_token("bot", "ab" * 32, T0)
    with pytest.raises(ValueError, match="does not exist"):
        store.add_api_token("nobody", "cd" * 32, T0)
    later = T0 + timedelta(minutes=3)
    user = store.user_by_token("ab" * 32, later)
    assert user is not None and (user["name"], user["role"]) == ("bot", "operator")
    assert "password_hash" not in user
    assert store.one("SELECT last_used_at FROM api_tokens")["last_used_at"] == \
        "2026-03-02T10:03:00.000Z"
    assert store.user_by_token("cd" * 32, later) is None
    store.set_user("bot", disabled=True)
    assert store.user_by_token("ab" * 32, later) is None  # a disabled user's token is dead


def test_audit_keeps_old_calls_and_takes_an_actor(store: Store) -> None:
    add_contact(store, A, at=T0)  # a subject hash only for a number the store holds
    store.audit("purge", None, {"n": 1}, T0)
    store.audit("gdpr_export", A, {}, T0, actor="carol")
    log = store.audit_log()
    assert [(r["action"], r["actor"]) for r in log] == [("gdpr_export", "carol"),
                                                        ("purge", None)]
    assert log[0]["subject_hash"] == store.number_hash(A) and log[1]["detail"] == {"n": 1}
    assert len(store.audit_log(limit=1)) == 1
