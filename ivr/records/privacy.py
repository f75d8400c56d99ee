"""Data-protection duties: opposition list, proof of consent, access, erasure, retention.

CNIL rules for automated political calls: a person may object at any time (effective at once,
for every campaign, kept as a keyed hash so it survives erasure); proof of consent is kept;
access and erasure requests are answered; data is not kept longer than the retention period.

Every function takes `now` (an aware datetime) and E.164 numbers; the statements are the
store's (StoreBackend: consents_of, optout_of, person_data, erase_person, places_holding,
unscanned_columns, purge_before).

Erasure policy (gdpr_erase), for every form of the number's line (an overseas box's +33 9…
and +590 9… forms: line_forms):
- refused, nothing changed, while a call to the number rings or runs (an attempt without an
  outcome started within IN_PROGRESS_S): its end would write the person's keys and choice
  back. Whatever erased it anyway (an attempt older than that), a call's end writes no proof
  row nor opposition for the erased placeholder number (store.finish_answered).
- contacts row: deleted (name, list, extra columns, everything).
- calls rows: kept for statistics (campaign, times, outcome, stage, prompts heard) but the
  number becomes the constant 'erased' (not a hash: a hash would keep a linkable pseudonym for
  people who never objected), contact_id and channel_id become NULL, keys pressed are cleared.
- consents rows: deleted; proof of consent is personal data too. An objection stays proven by
  the optouts row (via, campaign, created_at).
- other contacts' extra cells naming the number in any common form (a "parrain" column:
  +33 6…, 06 12 34 56 78, 0612 345 678): the part of the cell writing it (between ',', ';',
  '|' or line breaks, the name beside it included; the number's text alone when that part
  holds other digits) becomes '[effacé]', and the cell is removed when nothing else is left:
  "Jean 06 12 34 56 78, Marie 06 98 76 54 32" keeps Marie's part. The access request shows
  only the number's text in each such cell, under its column's name
  (named_in_other_contacts), nothing else of that row (a name or number beside it may be
  another person's). Another contact's name cell writing the number ("Paul (fils de Jeanne
  06 12 34 56 78)") loses the number's own text only: the words around it are that
  contact's own name (store/other_cells.name_without).
- optouts row: kept with its number_hash (the opposition survives), clear number set NULL.
  Erasure does not add an opposition: someone who never objected leaves no hash there.
- audit rows: kept (accountability: they prove the request was handled); their keyed
  subject_hash only if the person is on the opposition list (a hash of someone who never
  objected is a pseudonym a brute force over 10^8 mobile numbers reverses), so the erasure's
  own row carries none then, nor does a later audit row about a number the store no longer
  holds (store.audit: an export or a look-up after the erasure); any clear number inside their
  detail text becomes '[erased]'.
- then the WAL is checkpointed (TRUNCATE): `wal_checkpointed` is False when another process
  holds the store open in a read, and the erased rows stay in the -wal until it closes.
- kept, for the person's own protection: what the calling rules read of the number, so that
  asking to be erased never gets someone called again sooner than not asking would (a list
  imported later may hold the number again). Before the rows go, the newest refusal (key 2)
  still within the refusal cooldown and the attempts still within the attempt cap's 30-day
  window are kept in `erasure_holds` (store/erasure_holds.py), under the number's keyed hash
  (the opposition list's HMAC: no number in clear), until the later of the cooldown's end and
  the newest attempt's leaving the window (`kept_until`: at most the cooldown, 60 days by
  default, after the erasure). Nothing else: no campaign, outcome, key or list. Nothing at all
  when neither is recent, nor for an opposed number (its opposition already keeps every call
  away). The claim reads it as it read the erased rows, never once it has expired; `ivr purge`
  deletes it then; the access request shows it (`erasure_hold`). The forms of one line share
  it: each form's erasure merges into the hold of every form.
- finally, in the same transaction, the store is scanned for the number: every column that
  can hold outside text, while the columns the program fills with typed values - ids,
  timestamps, enumerations, digests - are left out (store/sqlite_privacy.SCANS; PostgreSQL's
  small tables: every row as text). The big tables are read through indexes, not row by row
  (schema 12): a number column's, caller_id's per distinct value, and a partial index of the
  rows with a '+' (which every E.164 number holds) in any other searched column. If the
  number still appears anywhere (in contacts.extra, in national form too) the transaction is
  rolled back and IvrError names the place, so an erasure is never half-claimed. A table (on
  SQLite, a column) the store has no rule for (one added by hand) stops the erasure before it
  starts, naming its columns: it cannot be scanned without a rule, so it cannot be vouched for.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from ivr.numbers import NumberRejected, box_forms, is_e164
from ivr.opposition_input import opposition_number
from ivr.records.csv_read import short
from ivr.records.run_audit import lookbacks

from ivr.errors import IvrError
from ivr.store.base import ERASED_NUMBER, StoreBackend, parse_utc, utc

OPTOUT_CHANNELS = ("post", "email", "phone", "sms")
ERASED_TEXT = "[erased]"
# An attempt without an outcome started within this is a call that may still ring or run: its
# end would write the person's choice back after the erasure. Far longer than any call
# (campaign/deadline.longest_call_s: minutes); an older one was left open by a controller that
# died with no other to settle it, and must not block an erasure forever.
IN_PROGRESS_S = 3600

_DURATION = re.compile(r"([0-9]{1,6})([hdwmy])")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1),
         "m": timedelta(days=30), "y": timedelta(days=365)}


# -- input ---------------------------------------------------------------------------------------
def normalise_number(text: str, default_region: str, field: str = "number") -> str:
    """A phone number as typed (+33… or national 0…) -> E.164, or IvrError naming `field`.

    The opposition list's rule (opposition_input.opposition_number), also the import's: lenient about
    the writing ('tel:', 'Tél. :', copy-paste's invisible characters), never about which number
    - phonenumbers alone would read "abc0612345678", or "poste 12" as keypad digits."""
    try:
        return opposition_number(text, default_region)
    except NumberRejected as exc:
        raise IvrError(f"{field}: {short(text)} is not a valid phone number: give it as +33… "
                       f"or 0…; {exc.reason}") from None


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
    if not isinstance(number, str) or not is_e164(number):
        raise IvrError(f"{number!r} is not an E.164 number: give it as +33… "
                       "(normalise it with the default region first)")
    return number


def _aware(now: datetime) -> datetime:
    # A naive datetime would be read as local time by utc(): refuse rather than shift.
    if now.tzinfo is None or now.utcoffset() is None:
        raise IvrError("internal: `now` must be an aware UTC datetime")
    return now


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
def check_via(via: str | None) -> None:
    """How the objection came in must be said: a default recorded a declaration the operator
    never made (a phone request as a letter)."""
    if via not in OPTOUT_CHANNELS:
        raise IvrError(f"opt-out channel {via!r} is not one of: {', '.join(OPTOUT_CHANNELS)}")


def optout_add(store: StoreBackend, number: str, via: str, now: datetime,
               default_region: str) -> bool:
    """Record an objection received outside a call. True if it is new."""
    check_via(via)
    return store.add_optout(normalise_number(number, default_region), via, _aware(now))


def consent_proof(store: StoreBackend, number: str) -> list[dict[str, Any]]:
    """Every consent, refusal and opt-out recorded for the number (every form of its line:
    line_forms), oldest first."""
    number = _e164(number)
    rows = [row for form in line_forms(number) for row in store.consents_of(form)]
    rows.sort(key=lambda r: (str(r.get("at")), r.get("id") or 0))
    proof: list[dict[str, Any]] = [{"source": "call", **row} for row in rows]
    for row in proof:
        _json_field(row, "heard_sha256")  # prompt key -> sha256 of what the person heard
    optout = store.optout_of(number)
    if optout is not None:
        # Matched by keyed hash: still found after the clear number was erased.
        erased = optout["number"] is None
        proof.append({"source": "optouts", "kind": "optout", "via": optout["via"],
                      "at": optout["created_at"], "campaign": optout["campaign"],
                      "number_erased": erased,
                      "note": "number erased; opposition kept as a keyed hash" if erased else ""})
    return proof


def campaigns_of(store: StoreBackend, number: str) -> list[dict[str, Any]]:
    """Every campaign the number (any form of its line) was part of: the list, basis and
    progress of each binding."""
    return [{"source": "campaign", "campaign": r["campaign"], "list": r["source"],
             "basis": r["basis"], "acquired_on": r["acquired_on"], "status": r["status"],
             "bound_at": r["bound_at"]} for form in line_forms(_e164(number))
            for r in store.contact_campaigns(form)]


# -- rights requests ------------------------------------------------------------------------------
def gdpr_export(store: StoreBackend, number: str, now: datetime) -> dict[str, Any]:
    """Everything held about the person (right of access), JSON-serialisable."""
    number, now = _e164(number), _aware(now)
    with store.transaction():  # one consistent snapshot, and the audit row with it
        data = store.person_data(number)
        for form in line_forms(number)[1:]:  # what the erasure clears, the export shows
            _merge_person_data(data, store.person_data(form))
        for table, column in (("contacts", "extra"), ("calls", "prompts_sha256"),
                              ("consents", "heard_sha256"), ("audit", "detail")):
            for row in data[table]:
                _json_field(row, column)
        counts = {"contacts": len(data["contacts"]), "calls": len(data["calls"]),
                  "consents": len(data["consents"]), "audit": len(data["audit"]),
                  "named_in_other_contacts": len(data["named_in_other_contacts"]),
                  "opted_out": data["optout"] is not None,
                  "erasure_hold": data["erasure_hold"] is not None}
        store.audit("gdpr_export", number, counts, now)
    return {"number": number, "exported_at": utc(now), **data}


def _merge_person_data(data: dict[str, Any], other: dict[str, Any]) -> None:
    """Another form's rows (an overseas box line's +590 9… beside its +33 9…) added to
    `data`, each row once (an audit row may name both forms)."""
    for key, value in other.items():
        if isinstance(value, list):
            have = data.setdefault(key, [])
            have.extend(row for row in value if row not in have)
        elif data.get(key) is None:
            data[key] = value


def _unblocked_at(store: StoreBackend, call_id: int) -> str:
    """'after HH:MM UTC' (rounded up): when the attempt stops blocking an erasure. A dead
    controller's attempt never ends by itself, so the operator learns when to try again."""
    try:
        start = parse_utc(str((store.call(call_id) or {})["started_at"]))
    except (KeyError, ValueError):  # a hand-written row: say it as the rule is
        return f"{IN_PROGRESS_S // 60} minutes after it started"
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)  # as SQLite reads it
    at = start + timedelta(seconds=IN_PROGRESS_S, minutes=1, microseconds=-1)  # ceil
    return at.astimezone(timezone.utc).strftime("after %H:%M UTC")


def line_forms(number: str) -> list[str]:
    """The number, then the other E.164 forms of its line: an overseas box's +33 9… and
    +590 9… forms (numbers.box_line), which an older release may have stored apart and the
    store keeps apart where both are held (store/box_lines.py). One person, one erasure."""
    forms = box_forms(number) or (number,)
    return [number, *(f for f in dict.fromkeys(forms) if f != number)]


def _erase_form(store: StoreBackend, form: str, now: datetime, counts: dict[str, Any],
                cooldown: timedelta | None = None) -> None:
    """gdpr_erase of one form of the line, its counts added to `counts`."""
    ringing = store.call_in_progress(form, now - timedelta(seconds=IN_PROGRESS_S))
    if ringing is not None:
        raise IvrError(f"a call to {form} is in progress (attempt {ringing}): erase it "
                       f"once it ends (or {_unblocked_at(store, ringing)} if no "
                       "run is active); nothing was erased")
    for key, n in store.erase_person(form, erased_number=ERASED_NUMBER, erased_text=ERASED_TEXT,
                                     now=now, cooldown=cooldown).items():
        counts[key] = counts.get(key, 0) + n
    left = store.places_holding(form)
    if left:
        raise IvrError(f"erasure of {form} stopped, nothing changed: the number is also "
                       f"in {', '.join(left)}; that data needs its own erasure rule")


def gdpr_erase(store: StoreBackend, number: str, now: datetime,
               refusal_cooldown: timedelta | None = None) -> dict[str, Any]:
    """Erase the person's data in one transaction (policy in the module docstring); refused
    while a call to the number is in progress (IN_PROGRESS_S). `refusal_cooldown`:
    schedule.refusal_cooldown_days, how long a refusal is kept (its default, 60 days, if None)."""
    number, now = _e164(number), _aware(now)
    unknown = store.unscanned_columns()
    if unknown:
        raise IvrError(f"erasure of {number} stopped, nothing changed: the store holds "
                       f"{', '.join(unknown)}, which no erasure rule covers; that data needs "
                       "its own erasure rule")
    with store.transaction():
        counts: dict[str, Any] = {}
        for form in line_forms(number):
            _erase_form(store, form, now, counts, refusal_cooldown)
        counts["opposition_kept"] = store.is_opted_out(number)
        # The subject's keyed hash only for an objector (whose hash the optouts row keeps).
        store.audit("gdpr_erase", number if counts["opposition_kept"] else None, counts, now)
    # The erased rows are still in the write-ahead log until a checkpoint copies it back
    # (SQLite); in dead row versions until the tables are rewritten (PostgreSQL).
    counts["wal_checkpointed"] = store.checkpoint_wal()
    role, refused = getattr(store, "rewrite_refused", lambda: ("", []))()
    if refused:  # PostgreSQL, a role not owning the tables: the server would skip the rewrite
        counts["rewrite_refused"] = {"role": role, "tables": refused}
    return counts


# -- retention ------------------------------------------------------------------------------------
def purge(store: StoreBackend, older_than: timedelta, now: datetime,
          keep: timedelta = timedelta(0), given: str | None = None,
          campaign: str | None = None) -> dict[str, Any]:
    """Delete what is older than the retention period, by chunks (one transaction each).

    `keep`: what the calling rules still read (config.rules_lookback_days); a shorter period is
    refused, since deleting a recent refusal or attempt would let that number be called again.
    The store is shared: so is another campaign's longer lookback, as its last run start
    recorded it (run_audit.record_rules; `campaign` is this config's own, whose `keep` is
    current). `given`: the --older-than text the operator typed, echoed back in that refusal.

    Calls and consents older than the cutoff go (a call still referenced by a kept consent
    stays with it); contacts go when both updated_at and their last call are older; opposition
    hashes stay forever, only their clear number is cleared once older. Past runs' rows go
    too: controllers stopped before the cutoff, and snapshots last published before it (not a
    live controller's), one of each per `ivr run`. Audit rows are kept, but one older than the
    cutoff keeps its keyed subject_hash only for an objector (the optouts row holds that hash):
    anyone else's is a pseudonym of a person whose data is gone. Erasure holds go once their
    kept_until has passed.
    """
    now = _aware(now)
    if older_than <= timedelta(0):
        raise IvrError("the retention period must be positive, e.g. 730d")
    days = f"{older_than / timedelta(days=1):g} days"  # 1m is 30 days, 36h 1.5
    what = f"--older-than {given} ({days})" if given else f"retention.days ({days})"
    if older_than < keep:
        raise IvrError(f"{what} is shorter than the {keep.days} days the calling rules read "
                       f"back (refusal cooldown, attempt cap): use at least {keep.days}d")
    if campaign is not None:
        _others_kept(store, campaign, older_than, what)
    cutoff = now - older_than
    # Not in one transaction: the store deletes by chunks, each its own (another writer gets
    # the lock in between); a purge stopped midway is finished by the next one.
    counts: dict[str, Any] = {"cutoff": utc(cutoff), **store.purge_before(cutoff, now)}
    store.audit("purge", None, counts, now)  # once, last, with the totals
    return counts


def _others_kept(store: StoreBackend, campaign: str, older_than: timedelta, what: str) -> None:
    """The other campaigns of the store: a purge shorter than the span one's rules read back,
    as its last run or check recorded it (run_audit.record_rules), is refused; so is any purge
    while a campaign with contacts still to call has recorded none (its span is unknown)."""
    recorded = lookbacks(store)
    others = {name: n for name, n in recorded.items() if name != campaign}
    longest = max(others, key=lambda name: others[name], default=None)
    if longest is not None and older_than < timedelta(days=others[longest]):
        n = others[longest]
        raise IvrError(f"{what} is shorter than the {n} days campaign {longest!r} reads back "
                       f"(its refusal cooldown or attempt cap, as its last run or check "
                       f"recorded it): refusals it still honours would be deleted and those "
                       f"people called again; use at least {n}d")
    unknown = [c for c in store.campaigns() if c != campaign and c not in recorded
               and store.pending_sources(c)]
    if unknown:
        named = ", ".join(repr(c) for c in unknown[:3]) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise IvrError(f"campaign {named} still has contacts to call and has recorded no span "
                       "of its calling rules (neither run nor checked since this release): "
                       "a purge might delete refusals it honours; run `ivr --config <its "
                       "config> check` once for each, then purge again")


# The advice to a PostgreSQL role that may not rewrite the tables (a text, not a statement).
OWNER_FIX = "ALTER TABLE <table> OWNER TO"


def erase_warning(store: StoreBackend, store_path: object, counts: dict[str, Any],
                  number: str) -> str | None:
    """The one line `ivr gdpr erase` and the console add when the erased number may still be
    on disk: the store's words for what remains and what to do; None when nothing remains."""
    if counts.get("wal_checkpointed", True):
        return None
    refused = counts.get("rewrite_refused")
    if refused:
        role = refused["role"]
        return (f"warning: the role {role} does not own {', '.join(refused['tables'])}, so "
                "PostgreSQL may not rewrite them: the erased rows stay on disk as dead row "
                f"versions; the role the program runs as must own the tables ({OWNER_FIX} "
                f"{role}, run by their owner), then run `ivr gdpr erase {number}` again")
    if getattr(store, "remote", False):  # PostgreSQL: a lock was not granted within lock_timeout
        return ("warning: another session held a lock on a table the erasure changed, so it "
                "was not rewritten: the erased number stays on disk in its old row versions; "
                f"run `ivr gdpr erase {number}` again once that session has ended")
    return wal_warning(store_path)


def wal_warning(store_path: object) -> str:
    """What `ivr gdpr erase` and the console say when the checkpoint found another process
    reading the SQLite store: the erased number is still in its -wal file."""
    return (f"warning: another process holds {store_path} open: the erased number stays in "
            "its -wal file until that process closes the store; run `ivr gdpr erase` again "
            "then")
