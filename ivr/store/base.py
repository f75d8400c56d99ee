"""The store's interface and its dialect-neutral row types.

The rest of the program talks to a `StoreBackend`: every SQL statement lives behind it, in one
backend (ivr/store/sqlite.py, or ivr/store/pg.py on PostgreSQL, each with its own modules).
Nothing here knows SQL, PRAGMAs or a driver's exceptions.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ivr.errors import StoreError
from ivr.store.kept_export import Chunk
from ivr.store.sqlite_optout_key import ENV as KEY_ENV
from ivr.store.sqlite_optout_key import KEY_SAMPLE, check_key, fingerprint

Row = dict[str, Any]
# Set to 1 once: record a key no kept number can check (KeyedAudit.verify_optout_key).
CONFIRM_ENV = "IVR_OPTOUT_KEY_CONFIRM"


def utc(now: datetime) -> str:
    """The one text form of an instant in the store: ISO 8601, UTC, milliseconds, 'Z'."""
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_totals(by_source: Iterable[Row]) -> dict[str, int]:
    """Contacts per status from contacts_per_source's rows (source, status, n): what both
    backends' contact_status_counts answer, and what the report sums without a second read."""
    out: dict[str, int] = {}
    for r in by_source:
        out[r["status"]] = out.get(r["status"], 0) + int(r["n"])
    return out


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


TOKEN_USE_NOTED_S = 60.0  # an API token's last_used_at is rewritten at most this often
# What an erasure writes for the number of the calls it keeps (records/privacy.gdpr_erase). A
# call's end never writes a proof row nor an opposition for it (finish_answered, record_choice).
ERASED_NUMBER = "erased"


def token_use_to_note(last_used_at: str | None, now: datetime) -> bool:
    """Whether a token's use is written: a write per request would make every API read a
    commit (and the console's change marker, hence its report cache, useless)."""
    return last_used_at is None or (now - parse_utc(last_used_at)).total_seconds() >= \
        TOKEN_USE_NOTED_S


@dataclass
class CallResult:
    """What an answered call produced; written in one transaction by finish_answered."""
    outcome: str
    stage: str
    keys: str
    heard: dict[str, str]  # prompt key -> sha256
    choice: str | None = None  # consent | refusal | optout
    choice_key: str | None = None
    answered_prompt: str | None = None
    answered_sha256: str | None = None
    slot: str | None = None
    amd_status: str | None = None
    hangup_cause: str | None = None  # Q.850, when the IVR saw the hangup


@dataclass(frozen=True)
class RunOwner:
    """The `ivr run` holding a store (hold_run): named when another run is refused."""
    pid: int
    host: str
    started: datetime

    @classmethod
    def this_process(cls, now: datetime) -> "RunOwner":
        return cls(os.getpid(), socket.gethostname(), now)

    def describe(self) -> str:
        since = self.started.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"ivr run pid {self.pid} on host {self.host} since {since}"


@dataclass
class History:
    """One number's past as the calling rules see it."""
    opted_out: bool = False
    attempts: list[datetime] = field(default_factory=list)
    last_refusal: datetime | None = None
    in_flight: bool = False  # an attempt of this number (any campaign) has no outcome yet
    retry_at: datetime | None = None  # of the last attempt of this number in this campaign
    # The contact's slot and timezone as the claim read them in its transaction, fresher than
    # the plan's row (a slot chosen, a zone corrected since); None: the caller's row is current.
    current: Mapping[str, str | None] | None = None


class Decision(Protocol):
    """What a judge returns; the store only needs to know whether to dial."""
    @property
    def allowed(self) -> bool: ...


@dataclass(frozen=True)
class Claim:
    """The result of claim_attempt: the attempt row written (None when refused) and why.
    `token`: the attempt's FastAGI token, set by planning.claim, never by the store (which
    keeps only its hash); kept out of repr so no log line can carry it."""
    call: Row | None
    decision: Decision
    token: str | None = field(default=None, repr=False, compare=False)
    # The contact as the claim judged it (the plan's row with the slot and time zone read in
    # the claim's transaction), set by planning.claim: the Originate's last calendar check.
    contact: Row | None = field(default=None, repr=False, compare=False)


class KeyedAudit:
    """What both backends do the same way over their own SQL primitives (`transaction`,
    `_add_optout`, `_audit`, `_holds`, `_kept_optouts`, `_key_fingerprint`,
    `_record_key_fingerprint`, `optout_count`): the opposition list's keyed hash and its key's
    check, adding an opposition, and one audit row. Kept here once so they cannot drift."""
    _key: bytes

    def number_hash(self, number: str) -> str:
        return hmac.digest(self._key, number.encode(), "sha256").hex()  # one-shot: 1/4 the cost

    def number_hashes(self, numbers: Iterable[str]) -> list[str]:
        """number_hash of each, HMAC (RFC 2104) written out over two SHA-256 states keyed once
        (the key's inner and outer blocks), each copied per number: a plan hashes every
        contact (0.07 s per 100,000; hmac's own copy 0.11 s, one-shot digests 0.19 s)."""
        key = self._key if len(self._key) <= 64 else hashlib.sha256(self._key).digest()
        key = key.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key)).copy
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in key)).copy
        out = []
        for number in numbers:
            i, o = inner(), outer()
            i.update(number.encode())
            o.update(i.digest())
            out.append(o.hexdigest())
        return out

    def verify_optout_key(self) -> str | None:
        """Refuse a key the list was not written with (sqlite_optout_key): its latest kept
        oppositions, and the fingerprint recorded first (returned; None: none yet). Writes
        nothing: checked before an upgrade too, a refusal leaves the store as it was."""
        stored = self._key_fingerprint()
        kept = self._kept_optouts(KEY_SAMPLE)
        check_key(kept, self.number_hash, stored)
        # A store from before the fingerprint whose oppositions all lost their number (erased)
        # checks no key: recording this one would make a wrong key the store's, every
        # opposition then silently unmatched. Only on the operator's word.
        if stored is None and not kept and (n := self.optout_count()) \
                and os.environ.get(CONFIRM_ENV) != "1":
            raise StoreError(f"{n} oppositions of this store cannot be checked against "
                             f"{KEY_ENV} (their numbers were erased): if it is the key the "
                             f"previous release used, set {CONFIRM_ENV}=1 once to record it")
        return stored

    def check_optout_key(self) -> None:
        """verify_optout_key, then the key's fingerprint recorded if none yet: an open that
        finds one takes no write lock (the console opens a store per thread)."""
        if self.verify_optout_key() is None:  # checked first: a wrong key is never recorded
            self._record_key_fingerprint(fingerprint(self.number_hash))
            check_key([], self.number_hash, self._key_fingerprint())  # another's came first

    def add_optout(self, number: str, via: str, now: datetime,
                   campaign: str | None = None, actor: str | None = None) -> bool:
        """Opposition takes effect at once and for every campaign. True if it is new.
        `actor`: the console user who typed or imported it (audit's actor, as `audit`)."""
        with self.transaction():
            added = self._add_optout(number, via, campaign, now)
            self._audit("optout", number, {"via": via, "campaign": campaign}, now, actor)
        return added

    def audit(self, action: str, number: str | None, detail: dict[str, Any],
              now: datetime, actor: str | None = None) -> None:
        """One audit row; inside another transaction it joins it (a savepoint). `actor`: the
        console user or API token's user, the system user of a CLI rights command ("alice
        (cli)": records/acting.py), None: the program itself. The subject's
        keyed hash only for a number the store holds (a contact, a call, a consent or an
        opposition): after an erasure, an export or a look-up of someone who never objected
        would otherwise write back the pseudonym the erasure removed."""
        with self.transaction():
            held = number is not None and self._holds(number)
            self._audit(action, number if held else None, detail, now, actor)


Judge = Callable[[History], Decision]

class StoreBackend(Protocol):
    """Every store operation the program uses. Implementations own all their SQL."""

    # -- transactions, the audit trail, the run holding the store
    # remote: a database server (PostgreSQL): callers on the event loop run store calls in a
    # worker thread so no round trip stalls the loop. shares_work: several controllers may run
    # one campaign together (hold_run does not refuse a second). controller_id: this run's id
    # while hold_run holds the store (written to calls.controller), else None.
    # reclaim_in_background: set by the console: what checkpoint_wal does after an erasure
    # may follow the answer (PostgreSQL's rewrite of the changed tables takes seconds).
    remote: bool
    shares_work: bool
    controller_id: str | None
    reclaim_in_background: bool

    def transaction(self) -> AbstractContextManager[None]: ...
    def hold_run(self, owner: RunOwner, campaign: str) -> AbstractContextManager[None]: ...
    def orphaned_calls(self, campaign: str, now: datetime) -> list[Row]: ...
    def controllers(self, campaign: str | None = None) -> list[Row]: ...
    # the live controllers with the others' open attempts per node (shared caps; nodes.Shares)
    def peer_load(self, campaign: str) -> list[Row]: ...
    def unreachable(self) -> str: ...  # why the store cannot be reached now, "" when it can
    def audit(self, action: str, number: str | None, detail: dict[str, Any],
              now: datetime, actor: str | None = None) -> None: ...
    def checkpoint_wal(self) -> bool: ...

    # -- the opposition list
    def number_hash(self, number: str) -> str: ...
    def number_hashes(self, numbers: Iterable[str]) -> list[str]: ...
    def is_opted_out(self, number: str) -> bool: ...
    def guard_key(self, number: str) -> None: ...  # StoreError: a real number, the demo's key
    def add_optout(self, number: str, via: str, now: datetime,
                   campaign: str | None = None, actor: str | None = None) -> bool: ...
    # optouts_since: (id, number_hash) of the oppositions past `after_id` or in `gaps`; with
    # `since`, only those created since then and the newest row (callflow/opposed.Opposed)
    def optouts_since(self, since: datetime | None, after_id: int = 0,
                      gaps: Sequence[int] = ()) -> list[Row]: ...

    # -- calls
    def claim_attempt(self, contact: Mapping[str, Any], *, campaign: str, caller_id: str,
                      node: str, now: datetime, attempts_since: datetime,
                      refusals_since: datetime, judge: Judge,
                      token_hash: str | None = None) -> Claim: ...
    def call(self, call_id: int) -> Row | None: ...
    # call_by_channel: id, number, campaign of the attempt placed on that channel (its
    # Uniqueid), None when this store placed none (another store's, or erased since)
    def call_by_channel(self, channel_id: str) -> Row | None: ...
    def mark_answered(self, call_id: int, now: datetime) -> None: ...
    def record_answer(self, call_id: int, at: datetime) -> None: ...
    # finish_answered: the hangup cause stored (one already there, else the result's, else
    # "16"), None if the attempt already had its outcome (nothing written)
    def finish_answered(self, call_id: int, result: CallResult, now: datetime,
                        retry_at: datetime | None = None) -> str | None: ...
    def finish_unanswered(self, call_id: int, outcome: str, cause: str | None, now: datetime,
                          retry_at: datetime | None, stage: str | None = None) -> bool: ...
    # record_choice: a refusal or an opposition as its key is pressed (its proof row, the keys
    # so far), before the call ends; choices_of: the kinds of the call's proof rows
    def record_choice(self, call_id: int, result: CallResult, at: datetime) -> bool: ...
    def choices_of(self, call_id: int) -> set[str]: ...
    def withdraw_attempt(self, call_id: int) -> bool: ...
    def set_hangup_cause(self, call_id: int, cause: str) -> None: ...
    def set_hangup_cause_by_channel(self, channel_id: str, cause: str,
                                    campaign: str) -> None: ...
    def open_calls(self, node: str | None = None, campaign: str | None = None,
                   controller: str | None = None) -> list[Row]: ...
    def last_call_id(self, campaign: str | None = None) -> int: ...
    def outcome_counts(self, campaign: str | None, since_id: int = 0,
                       controller: str | None = None) -> dict[str, int]: ...
    def history(self, numbers: list[str], attempts_since: datetime, refusals_since: datetime,
                campaign: str | None = None) -> dict[str, History]: ...

    # -- planning and preflight
    def pending_contacts(self, campaign: str) -> list[Row]: ...
    def plan_contacts(self, campaign: str, *, attempts_since: datetime,
                      refusals_since: datetime, now: datetime, chunk: int
                      ) -> Iterator[list[Row]]: ...  # chunks, each row with plan_quiet
    # (PostgreSQL also: plan_opposed, and plan_history when not quiet)
    def contact_status_counts(self, campaign: str | None = None) -> dict[str, int]: ...
    def pending_sources(self, campaign: str) -> list[Row]: ...
    def unbound_sources(self) -> list[Row]: ...
    def contact_campaigns(self, number: str) -> list[Row]: ...

    # -- the report
    def call_totals(self, campaign: str | None = None) -> tuple[int, int]: ...
    def outcomes_per_attempt(self, campaign: str | None = None
                             ) -> dict[int, dict[str, int]]: ...
    def contacts_per_source(self, campaign: str | None = None) -> list[Row]: ...
    def outcomes_per_source(self, campaign: str | None = None) -> list[Row]: ...
    def optout_count(self) -> int: ...
    def export_calls(self, campaign: str | None = None) -> Iterator[Row]: ...
    def export_calls_csv(self, campaign: str | None, render: Callable[[Row], str]
                         ) -> Generator[bytes, None, int]: ...  # lines; count returned
    def export_calls_csv_kept(self, campaign: str | None, render: Callable[[Row], str],
                              kept: Mapping[int, Chunk], out: dict[int, Chunk] | None,
                              out_max: int | None = None
                              ) -> Generator[bytes, None, int]: ...  # KeptExport

    # -- data protection (the caller holds the transaction for erase_person; purge_before runs
    # its own transactions, a chunk each, so other writers get the lock in between)
    def consents_of(self, number: str) -> list[Row]: ...
    def optout_of(self, number: str) -> Row | None: ...
    def person_data(self, number: str) -> dict[str, Any]: ...
    # call_in_progress: the id of the number's newest attempt without an outcome started after
    # `started_after`, else None; on PostgreSQL it first locks the number's contacts (no claim
    # lands between this read and the erasure after it)
    def call_in_progress(self, number: str, started_after: datetime) -> int | None: ...
    # erase_person keeps first what the calling rules need (store/erasure_holds.py): `now`
    # and `cooldown` (schedule.refusal_cooldown_days) say how long; purge_before's `now`
    # deletes the holds whose time has passed
    def erase_person(self, number: str, *, erased_number: str, erased_text: str,
                     now: datetime | None = None,
                     cooldown: timedelta | None = None) -> dict[str, int]: ...
    def unscanned_columns(self) -> list[str]: ...
    def places_holding(self, number: str) -> list[str]: ...
    def purge_before(self, cutoff: datetime, now: datetime | None = None) -> dict[str, int]: ...

    # -- contact imports (batches written inside transaction())
    def import_session(self) -> AbstractContextManager[None]: ...
    def contacts_by_number(self, numbers: list[str]) -> dict[str, Row]: ...
    def seen_in_import(self, numbers: list[str]) -> set[str]: ...
    def mark_seen_in_import(self, number: str) -> None: ...
    def opted_out_among(self, numbers: list[str]) -> set[str]: ...
    # held_among: the numbers an erasure left a live hold for (store/erasure_holds.py), whose
    # history the plan must read rather than judge them as never called
    def held_among(self, numbers: list[str], now: datetime) -> set[str]: ...
    def add_contact(self, number: str, *, name: str | None, timezone: str | None, source: str,
                    basis: str | None, acquired_on: str | None, extra: str, status: str,
                    now: datetime) -> None: ...
    def update_contact(self, contact_id: int, changes: Mapping[str, Any],
                       now: datetime) -> None: ...
    def bind_contacts(self, numbers: list[str], *, campaign: str, source: str,
                      basis: str | None, acquired_on: str | None, now: datetime,
                      names: Mapping[str, str | None] | None = None) -> None: ...
    def bound_elsewhere(self, numbers: list[str], campaign: str) -> set[str]: ...
    # bindings_in: rows (number, source, basis) of these numbers already bound to the
    # campaign, with their first provenance (bind_contacts keeps it)
    def bindings_in(self, numbers: list[str], campaign: str) -> list[Row]: ...
    # withdraw_pending: these numbers' bindings to `campaign` still waiting for a call leave
    # the queue (opted_out): a later list records their objection or lack of consent
    def withdraw_pending(self, numbers: list[str], *, campaign: str) -> int: ...
    def share_list(self, source: str, *, campaign: str, basis: str, now: datetime,
                   from_campaign: str) -> int: ...
    def list_exists(self, source: str, campaign: str) -> bool: ...

    # -- the web console (run control, snapshots, users, API tokens, its reads)
    def set_run_control(self, campaign: str, *, desired: str | None = None,
                        max_concurrent: int | None = None,
                        calls_per_second: float | None = None, by: str | None,
                        now: datetime) -> Row: ...
    def run_control(self, campaign: str) -> Row | None: ...
    def publish_snapshot(self, campaign: str, controller: str, snapshot: dict[str, Any],
                         now: datetime) -> None: ...
    def snapshots(self, campaign: str) -> list[Row]: ...
    def fresh_snapshots(self, campaign: str, within_s: float,
                        now: datetime) -> list[Row]: ...
    def campaigns(self) -> list[str]: ...
    def recent_calls(self, campaign: str, limit: int = 50) -> list[Row]: ...
    def calls_per_hour(self, campaign: str) -> list[Row]: ...
    def contacts_page(self, campaign: str, *, source: str | None = None,
                      status: str | None = None, limit: int = 100, offset: int = 0
                      ) -> list[Row]: ...
    def lists_of(self, campaign: str) -> list[Row]: ...
    # campaigns: the only ones the user sees (None: every one; store/user_scope.py)
    def add_user(self, name: str, role: str, password_hash: str, now: datetime,
                 actor: str | None = None, campaigns: Sequence[str] | None = None) -> int: ...
    def user_by_name(self, name: str) -> Row | None: ...
    # keep_admin: refuse (sqlite_console.LastAdmin, a ValueError) to leave no enabled admin
    def set_user(self, name: str, *, role: str | None = None,
                 password_hash: str | None = None, disabled: bool | None = None,
                 keep_admin: bool = False) -> None: ...
    def set_user_campaigns(self, name: str, campaigns: Sequence[str] | None, now: datetime,
                           actor: str | None = None) -> None: ...
    def end_sessions(self, name: str) -> None: ...
    # the same password, hashed with today's parameters: sessions kept; False if it changed
    def rehash_password(self, name: str, old_hash: str, new_hash: str) -> bool: ...
    def users(self) -> list[Row]: ...
    def add_api_token(self, user_name: str, token_hash: str, now: datetime,
                      actor: str | None = None) -> int: ...
    def user_by_token(self, token_hash: str, now: datetime) -> Row | None: ...
    def api_tokens(self, user_name: str) -> list[Row]: ...
    def revoke_api_tokens(self, user_name: str, now: datetime,
                          token_id: int | None = None, actor: str | None = None) -> int: ...
    def audit_log(self, limit: int = 100) -> list[Row]: ...
    def audit_details(self, action: str) -> list[dict[str, Any]]: ...
    def change_marker(self) -> str: ...  # equal twice from one store: nothing committed between
    def calls_marker(self, campaign: str | None) -> str: ...  # equal: its calls unchanged
