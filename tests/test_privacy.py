"""Privacy: opposition list, proof of consent, access, erasure, retention. `now` is passed in."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ivr.errors import IvrError
from ivr.records.privacy import (
    consent_proof, gdpr_erase, gdpr_export, normalise_number, optout_add, parse_duration, purge,
)
from conftest import add_contact as _add_contact
from conftest import attempt
from opposition_forms import ACCEPTED, REFUSED
from ivr.store import CallResult, Store, utc

UTC = timezone.utc
T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
NUM = "+33612345678"
OTHER = "+33612345679"
CALLER = "+33162000000"
SHA_INTRO = "a" * 64
SHA_QUESTION = "b" * 64
EVIL = "'; DROP TABLE contacts; --"


def add_contact(store: Store, number: str, now: datetime, *, source: str = "list-2024",
                name: str = "Jeanne Dupont", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return _add_contact(store, number, at=now, source=source, name=name,
                        timezone="Europe/Paris", basis="consent", acquired_on="2024-01-01",
                        extra=extra if extra is not None else {"city": "Lyon"})


def answered(store: Store, contact: dict[str, Any], now: datetime, choice: str | None,
             key: str | None, campaign: str = "spring", slot: str | None = None) -> int:
    call = attempt(store, contact, campaign, CALLER, now)
    outcome = {"optout": "opted_out", "refusal": "declined", None: "message_played",
               "consent": "message_played"}[choice]
    result = CallResult(outcome=outcome, stage="question", keys=f"{key or ''}",
                        heard={"intro": SHA_INTRO, "question": SHA_QUESTION}, choice=choice,
                        choice_key=key, answered_prompt="question",
                        answered_sha256=SHA_QUESTION, slot=slot)
    assert store.finish_answered(call["id"], result, now + timedelta(seconds=40))
    return call["id"]


def text_places(store: Store, needle: str) -> list[str]:
    """Independent scan: every text value of every column of every table."""
    found = []
    for (table,) in store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        for row in store.q(f'SELECT * FROM "{table}"'):
            for column, value in row.items():
                if isinstance(value, str) and needle in value:
                    found.append(f"{table}.{column}")
    return found


def audits(store: Store, action: str) -> list[dict[str, Any]]:
    return store.q("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,))


# --- normalise_number ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["06 12 34 56 78", "+33 6 12 34 56 78", "0612345678",
                                  "06.12.34.56.78", "+33 (0)6 12 34 56 78", "0033612345678",
                                  "06\u00a012\u00a034\u00a056\u00a078",  # as e-mails copy it
                                  "06\u202f12\u202f34\u202f56\u202f78", "\u00a00612345678\t"])
def test_normalise_number_gives_e164(text: str) -> None:
    assert normalise_number(text, "FR") == NUM


@pytest.mark.parametrize("text", ["0612345678'", "abc0612345678", "0612345678'; DROP TABLE x",
                                  "12", "", "06 12 34 56 78 ext. 5", "+33 6 12 34 56 7"])
def test_normalise_number_rejects_junk_in_one_line(text: str) -> None:
    with pytest.raises(IvrError) as exc:
        normalise_number(text, "FR")
    msg = str(exc.value)
    assert msg.startswith("number: ")
    assert "is not a valid phone number: give it as +33… or 0…" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_normalise_number_reads_an_opposition_however_it_was_written(text: str,
                                                                     expected: str) -> None:
    assert normalise_number(text, "FR") == expected


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_normalise_number_says_why_it_refuses(text: str, reason: str) -> None:
    with pytest.raises(IvrError) as exc:
        normalise_number(text, "FR")
    msg = str(exc.value)
    assert msg.startswith("number: ") and reason in msg and "\n" not in msg


# --- parse_duration -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("48h", timedelta(hours=48)), ("30d", timedelta(days=30)), ("12w", timedelta(weeks=12)),
    ("6m", timedelta(days=180)), ("2y", timedelta(days=730)), (" 730d ", timedelta(days=730))])
def test_parse_duration_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-3d", "1.5y", "3x", "3 days", "9999999d"])
def test_parse_duration_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(IvrError) as exc:
        parse_duration(text)
    msg = str(exc.value)
    assert all(form in msg for form in ("48h", "30d", "12w", "6m", "2y")) and "\n" not in msg


# --- optout_add ---------------------------------------------------------------------------------

def test_optout_add_is_idempotent_and_effective_for_the_contact(store: Store) -> None:
    add_contact(store, NUM, T0)
    assert optout_add(store, "06 12 34 56 78", "post", T0, "FR") is True
    assert optout_add(store, "+33612345678", "email", T0 + timedelta(days=1), "FR") is False
    assert store.is_opted_out(NUM)
    rows = store.q("SELECT * FROM optouts")
    assert len(rows) == 1 and rows[0]["via"] == "post" and rows[0]["number"] == NUM
    assert rows[0]["number_hash"] == store.number_hash(NUM)
    assert store.one("SELECT status FROM contacts")["status"] == "opted_out"  # type: ignore


@pytest.mark.parametrize("via", ["fax", "POST", "", EVIL])
def test_optout_add_rejects_unknown_channel_and_writes_nothing(store: Store, via: str) -> None:
    with pytest.raises(IvrError, match="post, email, phone, sms"):
        optout_add(store, NUM, via, T0, "FR")
    assert store.q("SELECT * FROM optouts") == [] and store.q("SELECT * FROM audit") == []


def test_optout_add_rejects_a_number_with_a_quote(store: Store) -> None:
    with pytest.raises(IvrError, match="not a valid phone number"):
        optout_add(store, "0612345678'", "sms", T0, "FR")
    assert store.q("SELECT * FROM optouts") == []


# --- consent_proof ------------------------------------------------------------------------------

def test_consent_proof_shows_key_time_caller_id_campaign_and_prompt_hash(store: Store) -> None:
    contact = add_contact(store, NUM, T0)
    call_id = answered(store, contact, T0, "consent", "1", slot="morning")
    proof = consent_proof(store, NUM)
    assert proof == [{"source": "call", "kind": "consent", "key": "1",
                      "at": utc(T0 + timedelta(seconds=40)), "caller_id": CALLER,
                      "campaign": "spring", "prompt_key": "question",
                      "prompt_sha256": SHA_QUESTION, "slot": "morning", "call_id": call_id,
                      "heard_sha256": {"intro": SHA_INTRO, "question": SHA_QUESTION},
                      "amd_status": None, "answered_at": utc(T0 + timedelta(seconds=40))}]


def test_consent_proof_lists_refusal_then_optout_with_the_optouts_entry(store: Store) -> None:
    contact = add_contact(store, NUM, T0)
    answered(store, contact, T0, "refusal", "2")
    answered(store, contact, T0 + timedelta(days=3), "optout", "9", campaign="autumn")
    proof = consent_proof(store, NUM)
    assert [(p["source"], p["kind"], p.get("key")) for p in proof] == [
        ("call", "refusal", "2"), ("call", "optout", "9"), ("optouts", "optout", None)]
    assert proof[2]["via"] == "phone-key" and proof[2]["campaign"] == "autumn"
    assert proof[2]["number_erased"] is False
    assert consent_proof(store, OTHER) == []


def test_consent_proof_wants_e164(store: Store) -> None:
    with pytest.raises(IvrError, match="E.164"):
        consent_proof(store, "0612345678")


# --- gdpr_export --------------------------------------------------------------------------------

def test_export_holds_everything_about_the_person_and_is_json(store: Store) -> None:
    contact = add_contact(store, NUM, T0, source=EVIL, extra={"city": "Lyon", "note": "l'été"})
    add_contact(store, OTHER, T0, name="Someone Else")
    answered(store, contact, T0, "optout", "9", campaign=EVIL)
    store.audit("note", NUM, {"by": "operator"}, T0)
    now = T0 + timedelta(days=1)
    out = gdpr_export(store, NUM, now)

    assert json.loads(json.dumps(out)) == out
    assert out["number"] == NUM and out["exported_at"] == utc(now)
    assert [c["number"] for c in out["contacts"]] == [NUM]
    assert out["contacts"][0]["source"] == EVIL  # stored and read back verbatim
    assert out["contacts"][0]["extra"] == {"city": "Lyon", "note": "l'été"}
    assert len(out["calls"]) == 1 and out["calls"][0]["campaign"] == EVIL
    assert out["calls"][0]["prompts_sha256"] == {"intro": SHA_INTRO, "question": SHA_QUESTION}
    assert out["consents"][0]["heard_sha256"] == {"intro": SHA_INTRO, "question": SHA_QUESTION}
    assert [c["kind"] for c in out["consents"]] == ["optout"]
    assert out["optout"]["via"] == "phone-key" and out["optout"]["number"] == NUM
    assert {a["action"] for a in out["audit"]} == {"note"}
    assert out["audit"][0]["detail"] == {"by": "operator"}
    assert "Someone Else" not in json.dumps(out) and OTHER not in json.dumps(out)
    # The export is itself audited, by hash only.
    (row,) = audits(store, "gdpr_export")
    assert row["subject_hash"] == store.number_hash(NUM) and NUM not in row["detail"]
    assert json.loads(row["detail"])["calls"] == 1
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 2  # type: ignore


# --- gdpr_erase ---------------------------------------------------------------------------------

def test_erase_keeps_the_opposition_hash_and_nothing_in_clear(store: Store) -> None:
    contact = add_contact(store, NUM, T0, extra={"phone2": NUM})
    other = add_contact(store, OTHER, T0)
    answered(store, contact, T0, "consent", "1")
    answered(store, contact, T0 + timedelta(days=2), "optout", "9")
    answered(store, other, T0, "consent", "1")
    store.audit("note", None, {"about": NUM}, T0)
    assert text_places(store, NUM)  # the scan does see the number before erasure

    counts = gdpr_erase(store, NUM, T0 + timedelta(days=5))
    assert counts == {"contacts": 1, "calls": 2, "consents": 2, "optout_numbers_cleared": 1,
                      "audit_details_scrubbed": 1, "extra_cells_cleared": 0,
                      "holds_kept": 0, "opposition_kept": True,
                      "wal_checkpointed": True}
    assert text_places(store, NUM) == []
    assert store.is_opted_out(NUM)
    assert store.one("SELECT number FROM optouts")["number"] is None  # type: ignore
    # Call statistics remain, unlinkable; the other person is untouched.
    rows = store.q("SELECT * FROM calls WHERE contact_id IS NULL ORDER BY id")
    assert [(r["number"], r["keys"], r["channel_id"], r["outcome"]) for r in rows] == [
        ("erased", "", None, "message_played"), ("erased", "", None, "opted_out")]
    assert store.q("SELECT number FROM contacts") == [{"number": OTHER}]
    assert [r["number"] for r in store.q("SELECT number FROM consents")] == [OTHER]
    (row,) = audits(store, "gdpr_erase")
    assert row["subject_hash"] == store.number_hash(NUM)
    assert json.loads(row["detail"])["contacts"] == 1
    proof = consent_proof(store, NUM)
    assert len(proof) == 1 and proof[0]["number_erased"] is True
    assert proof[0]["note"] == "number erased; opposition kept as a keyed hash"


def test_erase_of_someone_who_never_objected_leaves_no_opposition(store: Store) -> None:
    contact = add_contact(store, NUM, T0)
    answered(store, contact, T0, "refusal", "2")
    counts = gdpr_erase(store, NUM, T0)
    assert counts["opposition_kept"] is False and counts["consents"] == 1
    assert not store.is_opted_out(NUM) and store.q("SELECT * FROM optouts") == []
    assert text_places(store, NUM) == []


def test_erase_of_an_unknown_number_reports_zero_and_audits(store: Store) -> None:
    add_contact(store, OTHER, T0)
    counts = gdpr_erase(store, NUM, T0)
    assert counts == {"contacts": 0, "calls": 0, "consents": 0, "optout_numbers_cleared": 0,
                      "audit_details_scrubbed": 0, "extra_cells_cleared": 0,
                      "holds_kept": 0, "opposition_kept": False,
                      "wal_checkpointed": True}
    (row,) = audits(store, "gdpr_erase")
    assert row["subject_hash"] is None  # no hash of someone who never objected
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 1  # type: ignore


def test_erase_does_not_touch_a_longer_number_that_starts_with_it(store: Store) -> None:
    short, long = "+4930123456", "+49301234567"
    add_contact(store, long, T0)
    assert gdpr_erase(store, short, T0)["contacts"] == 0
    assert store.q("SELECT number FROM contacts") == [{"number": long}]


def test_erase_rolls_back_when_the_number_is_left_somewhere_unknown(store: Store) -> None:
    contact = add_contact(store, NUM, T0)
    answered(store, contact, T0, "optout", "9")
    store.db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    store.db.execute("INSERT INTO notes (body) VALUES (?)", (f"call back {NUM} soon",))
    with pytest.raises(IvrError, match=r"notes\.body"):
        gdpr_erase(store, NUM, T0)
    assert store.one("SELECT number FROM contacts")["number"] == NUM  # type: ignore
    assert store.one("SELECT number FROM optouts")["number"] == NUM  # type: ignore
    assert audits(store, "gdpr_erase") == []


def test_erase_works_with_foreign_keys_on(store: Store) -> None:
    store.db.execute("PRAGMA foreign_keys=ON")  # as Store.open does for a file store
    contact = add_contact(store, NUM, T0)
    answered(store, contact, T0, "consent", "1")
    assert gdpr_erase(store, NUM, T0)["contacts"] == 1
    assert text_places(store, NUM) == []


# --- purge --------------------------------------------------------------------------------------

def test_purge_deletes_strictly_older_than_the_cutoff(store: Store) -> None:
    store.db.execute("PRAGMA foreign_keys=ON")
    old = add_contact(store, NUM, T0)
    at_cutoff = add_contact(store, OTHER, T0)
    answered(store, old, T0, "optout", "9")  # ends at T0+40s
    answered(store, at_cutoff, T0 + timedelta(seconds=1), "consent", "1")  # ends at T0+41s
    now = T0 + timedelta(seconds=41) + timedelta(days=30)
    counts = purge(store, timedelta(days=30), now)

    assert counts == {"cutoff": utc(T0 + timedelta(seconds=41)), "calls": 1, "consents": 1,
                      "contacts": 1, "optout_numbers_cleared": 1}
    assert store.q("SELECT number FROM contacts") == [{"number": OTHER}]
    assert [r["number"] for r in store.q("SELECT number FROM calls")] == [OTHER]
    assert [r["number"] for r in store.q("SELECT number FROM consents")] == [OTHER]
    assert store.is_opted_out(NUM) and text_places(store, NUM) == []
    (row,) = audits(store, "purge")
    assert row["subject_hash"] is None and json.loads(row["detail"])["calls"] == 1


def test_purge_keeps_a_contact_with_a_recent_call_or_update(store: Store) -> None:
    store.db.execute("PRAGMA foreign_keys=ON")
    called = add_contact(store, NUM, T0)
    # An attempt in flight does not touch contacts.updated_at: the call alone must keep it.
    attempt(store, called, "spring", CALLER, T0 + timedelta(days=20))
    assert store.one("SELECT updated_at FROM contacts WHERE id = ?",
                     (called["id"],))["updated_at"] == utc(T0)  # type: ignore
    updated = add_contact(store, OTHER, T0)
    store.db.execute("UPDATE contacts SET updated_at = ? WHERE id = ?",
                     (utc(T0 + timedelta(days=20)), updated["id"]))
    stale = add_contact(store, "+33612345670", T0)
    counts = purge(store, timedelta(days=15), T0 + timedelta(days=30))
    assert counts["contacts"] == 1 and counts["calls"] == 0
    assert {r["id"] for r in store.q("SELECT id FROM contacts")} == {called["id"], updated["id"]}
    assert store.one("SELECT 1 AS x FROM contacts WHERE id = ?", (stale["id"],)) is None


def test_purge_keeps_an_old_call_that_a_kept_consent_points_to(store: Store) -> None:
    store.db.execute("PRAGMA foreign_keys=ON")
    contact = add_contact(store, NUM, T0)
    call_id = answered(store, contact, T0, None, None)  # the call ends at T0+40s
    store.db.execute(  # proof written later than the call ended (e.g. imported afterwards)
        "INSERT INTO consents (call_id, contact_id, number, kind, key, at) "
        "VALUES (?, ?, ?, 'consent', '1', ?)",
        (call_id, contact["id"], NUM, utc(T0 + timedelta(days=20))))
    counts = purge(store, timedelta(days=15), T0 + timedelta(days=30))
    assert counts["calls"] == 0 and counts["consents"] == 0 and counts["contacts"] == 0
    assert store.call(call_id) is not None


def test_purge_refuses_a_non_positive_period(store: Store) -> None:
    add_contact(store, NUM, T0)
    with pytest.raises(IvrError, match="positive"):
        purge(store, timedelta(0), T0)
    assert store.one("SELECT COUNT(*) AS n FROM contacts")["n"] == 1  # type: ignore


def test_naive_now_is_refused(store: Store) -> None:
    with pytest.raises(IvrError, match="aware"):
        purge(store, timedelta(days=1), datetime(2024, 1, 1))
