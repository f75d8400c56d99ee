"""Data-protection duties: opposition list, proof of consent, access, erasure, retention.

CNIL rules for automated political calls: a person may object at any time (effective at once,
for every campaign, kept as a keyed hash so it survives erasure); proof of consent is kept;
access and erasure requests are answered; data is not kept longer than the retention period.

Every function takes `now` (an aware datetime) and E.164 numbers; all SQL is parameterised.
Timestamps are compared with SQLite's julianday(), so any ISO-8601 UTC text (Z or +00:00,
with or without milliseconds) compares correctly.

Erasure policy (gdpr_erase):
- contacts row: deleted (name, list, extra columns, everything).
- calls rows: kept for statistics (campaign, times, outcome, stage, prompts heard) but the
  number becomes the constant 'erased' (not a hash: a hash would keep a linkable pseudonym for
  people who never objected), contact_id and channel_id become NULL, keys pressed are cleared.
- consents rows: deleted; proof of consent is personal data too. An objection stays proven by
  the optouts row (via, campaign, created_at).
- optouts row: kept with its number_hash (the opposition survives), clear number set NULL.
  Erasure does not add an opposition: someone who never objected leaves no hash there.
- audit rows: kept (accountability: they prove the request was handled) with their keyed
  subject_hash; any clear number inside their detail text is replaced by '[erased]'.
- finally every column of every table is scanned; if the number still appears anywhere the
  transaction is rolled back and IvrError names the place, so an erasure is never half-claimed.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from ivr.numbers import e164

from ivr.errors import IvrError
from ivr.store.sqlite import Store, utc

OPTOUT_CHANNELS = ("post", "email", "phone", "sms")
ERASED_NUMBER = "erased"
ERASED_TEXT = "[erased]"

# Only what people actually type in a phone number: phonenumbers alone would accept
# "0612345678'; x" or "abc0612345678" by extracting the digits. No letters also means no
# extension ("ext. 5", "x5").
_NUMBER_CHARS = re.compile(r"\+?[0-9 ().\-/]+")
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")
_DURATION = re.compile(r"([0-9]{1,6})([hdwmy])")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1),
         "m": timedelta(days=30), "y": timedelta(days=365)}


# -- input ---------------------------------------------------------------------------------------
def normalise_number(text: str, default_region: str) -> str:
    """A phone number as typed (+33… or national 0…) -> E.164, or IvrError."""
    raw = text.strip()
    bad = IvrError(f"{text!r} is not a valid phone number: give it as +33… or 0…")
    number = e164(raw, default_region) if _NUMBER_CHARS.fullmatch(raw) else None
    if number is None:
        raise bad
    return number


def parse_duration(text: str) -> timedelta:
    """'48h', '30d', '12w', '6m' (30-day months), '2y' (365-day years)."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise IvrError(f"{text!r} is not a duration: use a positive whole number and a unit, "
                       "e.g. 48h, 30d, 12w, 6m (30-day months) or 2y (365-day years)")
    return int(m.group(1)) * _UNIT[m.group(2)]


def _e164(number: str) -> str:
    # Stored numbers are E.164; a national form would silently match nothing, which for an
    # erasure request would be a false "done".
    if not isinstance(number, str) or not _E164.fullmatch(number):
        raise IvrError(f"{number!r} is not an E.164 number: give it as +33… "
                       "(normalise it with the default region first)")
    return number


def _aware(now: datetime) -> datetime:
    # A naive datetime would be read as local time by utc(): refuse rather than shift.
    if now.tzinfo is None or now.utcoffset() is None:
        raise IvrError("internal: `now` must be an aware UTC datetime")
    return now


def _audit(store: Store, action: str, subject_hash: str | None, detail: dict[str, Any],
           now: datetime) -> None:
    # Store.audit opens its own transaction; this one runs inside ours.
    store.db.execute("INSERT INTO audit (at, action, subject_hash, detail) VALUES (?, ?, ?, ?)",
                     (utc(now), action, subject_hash, json.dumps(detail, ensure_ascii=False)))


def _json_field(row: dict[str, Any], column: str) -> None:
    """Parse a JSON text column in place; unparsable text is kept verbatim, flagged."""
    text = row.get(column)
    if text is None:
        return
    try:
        row[column] = json.loads(text)
    except json.JSONDecodeError:
        # An export must still show what is held, even if the stored JSON is damaged.
        row[column] = {"unparsed_text": text}


# -- opposition and proof --------------------------------------------------------------------------
def optout_add(store: Store, number: str, via: str, now: datetime, default_region: str) -> bool:
    """Record an objection received outside a call. True if it is new."""
    if via not in OPTOUT_CHANNELS:
        raise IvrError(f"opt-out channel {via!r} is not one of: {', '.join(OPTOUT_CHANNELS)}")
    return store.add_optout(normalise_number(number, default_region), via, _aware(now))


def consent_proof(store: Store, number: str) -> list[dict[str, Any]]:
    """Every consent, refusal and opt-out recorded for the number, oldest first."""
    number = _e164(number)
    proof: list[dict[str, Any]] = [
        {"source": "call", **row} for row in store.q(
            "SELECT kind, key, at, caller_id, campaign, prompt_key, prompt_sha256, slot, call_id "
            "FROM consents WHERE number = ? ORDER BY at, id", (number,))]
    optout = store.one("SELECT via, campaign, created_at, number FROM optouts "
                       "WHERE number_hash = ?", (store.number_hash(number),))
    if optout is not None:
        # Matched by keyed hash: still found after the clear number was erased.
        erased = optout["number"] is None
        proof.append({"source": "optouts", "kind": "optout", "via": optout["via"],
                      "at": optout["created_at"], "campaign": optout["campaign"],
                      "number_erased": erased,
                      "note": "number erased; opposition kept as a keyed hash" if erased else ""})
    return proof


# -- rights requests ------------------------------------------------------------------------------
def gdpr_export(store: Store, number: str, now: datetime) -> dict[str, Any]:
    """Everything held about the person (right of access), JSON-serialisable."""
    number, now = _e164(number), _aware(now)
    h = store.number_hash(number)
    with store.transaction():  # one consistent snapshot, and the audit row with it
        contacts = store.q("SELECT * FROM contacts WHERE number = ? ORDER BY id", (number,))
        calls = store.q(
            "SELECT * FROM calls WHERE number = :n OR contact_id IN "
            "(SELECT id FROM contacts WHERE number = :n) ORDER BY started_at, id", {"n": number})
        consents = store.q(
            "SELECT * FROM consents WHERE number = :n OR contact_id IN "
            "(SELECT id FROM contacts WHERE number = :n) ORDER BY at, id", {"n": number})
        optout = store.one("SELECT via, campaign, created_at, number FROM optouts "
                           "WHERE number_hash = ?", (h,))
        audit = store.q("SELECT * FROM audit WHERE subject_hash = ? OR instr(detail, ?) > 0 "
                        "ORDER BY at, id", (h, number))
        for row in contacts:
            _json_field(row, "extra")
        for row in calls:
            _json_field(row, "prompts_sha256")
        for row in audit:
            _json_field(row, "detail")
        counts = {"contacts": len(contacts), "calls": len(calls), "consents": len(consents),
                  "audit": len(audit), "opted_out": optout is not None}
        _audit(store, "gdpr_export", h, counts, now)
    return {"number": number, "exported_at": utc(now), "contacts": contacts, "calls": calls,
            "consents": consents, "optout": optout, "audit": audit}


def gdpr_erase(store: Store, number: str, now: datetime) -> dict[str, Any]:
    """Erase the person's data in one transaction (policy in the module docstring)."""
    number, now = _e164(number), _aware(now)
    h = store.number_hash(number)
    p = {"n": number}
    their_contacts = "SELECT id FROM contacts WHERE number = :n"
    their_calls = f"SELECT id FROM calls WHERE number = :n OR contact_id IN ({their_contacts})"
    with store.transaction():
        consents = store.db.execute(
            f"DELETE FROM consents WHERE number = :n OR contact_id IN ({their_contacts}) "
            f"OR call_id IN ({their_calls})", p).rowcount
        calls = store.db.execute(
            "UPDATE calls SET number = :erased, contact_id = NULL, channel_id = NULL, keys = '' "
            f"WHERE id IN ({their_calls})", {**p, "erased": ERASED_NUMBER}).rowcount
        # After the calls: with foreign_keys=ON a contact still referenced cannot be deleted.
        contacts = store.db.execute("DELETE FROM contacts WHERE number = :n", p).rowcount
        optouts = store.db.execute(
            "UPDATE optouts SET number = NULL WHERE number_hash = ? OR number = ?",
            (h, number)).rowcount
        audit = store.db.execute(
            "UPDATE audit SET detail = REPLACE(detail, ?, ?) WHERE instr(detail, ?) > 0",
            (number, ERASED_TEXT, number)).rowcount
        left = _places_holding(store, number)
        if left:
            raise IvrError(f"erasure of {number} stopped, nothing changed: the number is also "
                           f"in {', '.join(left)}; that data needs its own erasure rule")
        counts = {"contacts": contacts, "calls": calls, "consents": consents,
                  "optout_numbers_cleared": optouts, "audit_details_scrubbed": audit,
                  "opposition_kept": store.is_opted_out(number)}
        _audit(store, "gdpr_erase", h, counts, now)
    return counts


def _places_holding(store: Store, number: str) -> list[str]:
    """'table.column' of every place where the number still appears as a whole number."""
    places = []
    tables = [r["name"] for r in store.q(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    for table in tables:
        columns = [r["name"] for r in store.q("SELECT name FROM pragma_table_info(?)", (table,))]
        for column in columns:
            # Identifiers come from the schema, quoted; the number is a parameter. The GLOB
            # patterns skip longer numbers that merely start with this one; _e164 has
            # ensured the number holds no GLOB metacharacters.
            t, c = _quote(table), _quote(column)
            if store.one(f"SELECT 1 AS x FROM {t} WHERE typeof({c}) = 'text' AND "
                         f"({c} GLOB '*' || :n OR {c} GLOB '*' || :n || '[^0-9]*') LIMIT 1",
                         {"n": number}):
                places.append(f"{table}.{column}")
    return places


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# -- retention ------------------------------------------------------------------------------------
def purge(store: Store, older_than: timedelta, now: datetime) -> dict[str, Any]:
    """Delete what is older than the retention period, in one transaction.

    Calls and consents older than the cutoff go (a call still referenced by a kept consent
    stays with it); contacts go when both updated_at and their last call are older; opposition
    hashes stay forever, only their clear number is cleared once older. Audit rows are kept.
    """
    now = _aware(now)
    if older_than <= timedelta(0):
        raise IvrError("the retention period must be positive, e.g. 730d")
    cutoff = utc(now - older_than)
    p = {"cutoff": cutoff}
    older = "julianday({}) < julianday(:cutoff)"
    with store.transaction():
        consents = store.db.execute(
            f"DELETE FROM consents WHERE {older.format('at')}", p).rowcount
        calls = store.db.execute(
            f"DELETE FROM calls WHERE {older.format('COALESCE(ended_at, started_at)')} "
            "AND id NOT IN (SELECT call_id FROM consents WHERE call_id IS NOT NULL)", p).rowcount
        # A remaining call or consent means recent activity (or kept proof): keep the contact.
        contacts = store.db.execute(
            f"DELETE FROM contacts WHERE {older.format('updated_at')} "
            "AND NOT EXISTS (SELECT 1 FROM calls WHERE calls.contact_id = contacts.id) "
            "AND NOT EXISTS (SELECT 1 FROM consents WHERE consents.contact_id = contacts.id)",
            p).rowcount
        optouts = store.db.execute(
            f"UPDATE optouts SET number = NULL WHERE number IS NOT NULL "
            f"AND {older.format('created_at')}", p).rowcount
        counts = {"cutoff": cutoff, "calls": calls, "consents": consents, "contacts": contacts,
                  "optout_numbers_cleared": optouts}
        _audit(store, "purge", None, counts, now)
    return counts
