"""One E.164 per overseas 09 box in the store, whatever form older releases wrote it in.

A Guadeloupe box (09 47 50 12 34) is stored as +33 9 47 50 12 34 (numbers.box_line); a release
that re-homed boxes wrote +590 9 47 50 12 34, and until numbers.box_line that form written by
hand stayed apart. A contact in one form and an opposition in the other did not match: the
person was called after objecting. At each open, once the opposition key is admitted (the
rewritten hashes are keyed), rows of the old form are given the +33 form, so this is a no-op
after the first open that finds any:

- a contact whose +33 form no contact holds: its number, its calls' and consents' numbers
  (the attempts cap and the refusals are counted by number) and its audit rows' subject hash;
- an opposition whose +33 form is not opposed yet: its number and keyed hash;
- where both forms are held (two contacts, or two oppositions), nothing is merged: both rows
  stay, and an opposition of either form is also kept under the other form's hash (an alias,
  without the number, so an erasure leaves no copy), so neither contact is called.

An opposition recorded later under one form of a box gets the same alias for the +33 form and
for any other form a contact still holds (`line_aliases`). An opposition whose number was
erased has only its hash left: it cannot be rewritten and stays under the form it was given
(a release before box forms were unified took +590 9…). So a box contact's own forms are
hashed instead, and an opposition found under another form is kept under the contact's form
too (`box_alias`): once for the contacts a store holds, in the step of migration 20
(`erased_box_aliases`, all or nothing with it), then for each contact written (add_contact).
Each backend gives the statements in its BOX_SQL (one dict per dialect: all SQL is there).
"""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import phonenumbers

from ivr.errors import StoreError
from ivr.numbers import BOX_PREFIXES, OVERSEAS_REGIONS, box_forms, box_line
from ivr.store.base import utc

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _voip_patterns() -> tuple[re.Pattern[str], tuple[tuple[str, re.Pattern[str]], ...]]:
    """The overseas regions' VoIP patterns (metadata) as one; and (country code, pattern) of
    those whose code starts with 9, the only ones a 9… number can hold (numbers._homes)."""
    found = []
    for region in OVERSEAS_REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is not None and meta.voip is not None and meta.voip.national_number_pattern:
            found.append((str(meta.country_code), meta.voip.national_number_pattern))
    union = re.compile("|".join(f"(?:{p})" for _, p in found))
    return union, tuple((cc, re.compile(p)) for cc, p in found if cc.startswith("9"))


def may_be_box(number: str) -> bool:
    """Whether box_forms may give `number` more than one form: a box's regional form, or a
    +33 9… an overseas region calls its own VoIP (numbers._homes' test, without its parses:
    box_forms costs ~0.5 ms per 09 number, this a few µs, and most 09 lines are the mainland's)."""
    if number.startswith(BOX_PREFIXES):
        return True
    if not number.startswith("+339"):
        return False
    nsn = number[3:]
    union, prefixed = _voip_patterns()
    return union.fullmatch(nsn) is not None or any(
        nsn.startswith(cc) and p.fullmatch(nsn[len(cc):]) for cc, p in prefixed)


class BoxLines:
    """The rewrite at open and the aliases, over each backend's `_box_rows`, `_box_one`,
    `_box_exec` (BOX_SQL by name) and `_box_lock`."""

    if TYPE_CHECKING:  # what the backend gives (never shadowing it at run time)
        def number_hash(self, number: str) -> str: ...
        def verify_optout_key(self) -> str | None: ...
        def transaction(self) -> AbstractContextManager[None]: ...
        def _audit(self, action: str, number: str | None, detail: dict[str, Any],
                   now: datetime, actor: str | None = None) -> None: ...
        def _box_rows(self, table: str) -> list[tuple[int, str]]: ...
        def _box_one(self, name: str, params: dict[str, Any]) -> bool: ...
        def _box_exec(self, name: str, params: dict[str, Any]) -> int: ...
        def _box_lock(self) -> None: ...

    def canonical_boxes(self, now: datetime | None = None) -> dict[str, int]:
        """Rewrite the old-form rows (module docstring); what was done, by kind (empty: none
        found). Under a key the list was not written with it writes nothing: the open refuses
        that key next."""
        if not any(self._old_forms(t) for t in ("contacts", "optouts")):
            return {}
        try:
            self.verify_optout_key()
        except StoreError:
            return {}
        now = now or datetime.now(timezone.utc)
        with self.transaction():
            self._box_lock()  # another process opening the store does it once, not twice
            done = self._box_rewrite(now)
            # A pair kept apart is found again at every open: only a change is reported
            changed = any(v for k, v in done.items() if "kept apart" not in k)
            if changed:
                self._audit("numbers_canonical", None, dict(done), now)
        if changed:
            log.warning("overseas 09 boxes given their +33 form: %s",
                        ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
        return dict(done)

    def _old_forms(self, table: str) -> list[tuple[int, str, str]]:
        """(id, number, its +33 form) of each row of `table` holding a box's regional form."""
        return [(i, n, line) for i, n in self._box_rows(table)
                if n.startswith(BOX_PREFIXES) and (line := box_line(n)) is not None]

    def _box_rewrite(self, now: datetime) -> Counter[str]:
        done: Counter[str] = Counter()
        apart: list[tuple[str, str]] = []  # (old, +33): both held by a contact
        for cid, old, line in self._old_forms("contacts"):
            if self._box_one("contact", {"n": line}):
                apart.append((old, line))
                done["contacts kept apart (both forms held)"] += 1
                continue
            self._box_exec("rename_contact", {"id": cid, "old": old, "new": line})
            self._rehash_audit(old, line)
            done["contacts rewritten"] += 1
        kept = {old for old, _ in apart}
        for oid, old, line in self._old_forms("optouts"):
            if old in kept:  # the pair's aliases below
                continue
            if self._box_one("optout", {"h": self.number_hash(line)}):
                done["oppositions kept apart (both forms opposed)"] += 1
                continue
            self._box_exec("rehash_optout", {"id": oid, "new": line,
                                             "h": self.number_hash(line)})
            self._rehash_audit(old, line)
            done["oppositions rewritten"] += 1
        for old, line in apart:
            done["opposition aliases"] += self._alias_pair(old, line, now)
        return +done

    def _rehash_audit(self, old: str, new: str) -> None:
        self._box_exec("rehash_audit", {"old": self.number_hash(old),
                                        "new": self.number_hash(new)})

    def _alias_pair(self, a: str, b: str, now: datetime) -> int:
        """An opposition of either form also kept under the other's hash; aliases added."""
        added = 0
        for frm, to in ((a, b), (b, a)):
            added += self._box_exec("copy_optout", {"from": self.number_hash(frm),
                                                    "to": self.number_hash(to)})
            if self._box_one("optout", {"h": self.number_hash(to)}):
                self._box_exec("contact_opposed", {"n": to, "at": utc(now)})
        return added

    def erased_box_aliases(self, now: datetime | None = None) -> int:
        """Migration 20's part (module docstring): each box contact, in its form and its +33
        form (canonical_boxes gives it that next), kept opposed under an erased opposition of
        another form; how many aliases were added. Runs only where an opposition was erased."""
        if not self._box_one("erased_any", {}):
            return 0
        now = now or datetime.now(timezone.utc)
        added = 0
        for _, number in self._box_rows("box_contacts"):
            for form in dict.fromkeys((box_line(number) or number, number)):
                added += self.box_alias(form, now, erased_only=True)
        if added:
            self._audit("numbers_canonical", None, {"erased oppositions aliased": added}, now)
            log.warning("overseas 09 boxes: %d erased opposition(s) given under another form "
                        "now also kept under the contact's form", added)
        return added

    def box_alias(self, number: str, now: datetime, erased_only: bool = False) -> int:
        """1 if an opposition of another form of this box's number (only an erased one, with
        erased_only) was copied under this form's hash, which had none; the contact of this
        form, if any, then opposed. 0 for a number of one form (any but an overseas box)."""
        forms = box_forms(number) if may_be_box(number) else ()
        if len(forms) < 2 or self._box_one("optout", {"h": (own := self.number_hash(number))}):
            return 0
        probe = "erased_optout" if erased_only else "optout"
        for form in forms:
            if form != number and self._box_one(probe, {"h": (h := self.number_hash(form))}):
                self._box_exec("copy_optout", {"from": h, "to": own})
                self._box_exec("contact_opposed", {"n": number, "at": utc(now)})
                return 1
        return 0

    def line_aliases(self, number: str) -> Iterator[str]:
        """The other forms of a box an opposition of `number` must be kept under too: its
        +33 form when given another, and any form a contact still holds."""
        forms = box_forms(number)  # the +33 form first
        for form in forms:
            if form != number and (form == forms[0] or self._box_one("contact", {"n": form})):
                yield form


# The migration whose step also runs erased_box_aliases (each backend's _migrate_step).
ERASED_ALIASES_AT = 20

__all__ = ["ERASED_ALIASES_AT", "BoxLines"]
