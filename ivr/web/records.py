"""Contacts, the opposition list and a person's rights, for the console: thin calls into the
library the CLI uses (records/contacts.py, records/privacy.py), so an upload, an opposition,
a proof of consent, an export or an erasure is the same whether typed or clicked."""
from __future__ import annotations

import csv
import io
import tempfile
from contextlib import suppress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.errors import ImportFileError, IvrError
from ivr.prompts.archive import heard_prompts
from ivr.records import contacts as contacts_mod
from ivr.records import privacy
from ivr.store.base import StoreBackend
from ivr.web import i18n

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # a list of several million lines still fits
MAX_OFFSET = 10 ** 12  # past any store's last contact, far below 2**63


def _spooled(data: bytes, filename: str) -> Path:
    """The upload as a file (the importers stream from a path), kept under its own name so
    messages name it; the caller deletes the folder."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"file: {len(data)} bytes, more than {MAX_UPLOAD_BYTES}: split the list")
    folder = Path(tempfile.mkdtemp(prefix="ivr-upload-"))
    path = folder / _safe_name(filename)
    try:
        path.write_bytes(data)
    except BaseException:
        _cleanup(path)
        raise
    return path


def _safe_name(filename: str) -> str:
    """The browser's file name if it can name a file in the folder, else upload.csv: '..',
    '.', a NUL or a name over 255 bytes (the file systems' limit) cannot."""
    name = Path(filename or "").name
    if name in ("", ".", "..") or "\x00" in name or len(name.encode("utf-8", "replace")) > 255:
        return "upload.csv"
    return name


def _cleanup(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.parent.rmdir()


OTHER_COUNTRIES = ("campaign {campaign!r} is not this console's config's: its list was read "
                   "with the default country rule (no foreign numbers), not this config's "
                   "contacts.allow_countries; import foreign numbers it allows with its own "
                   "config: ivr --config <its config> contacts import")


# What the API says for each of the CLI's words in i18n.FLAG_FIELDS (the page says its
# form's labels instead: i18n.form_words)
_API_WORDS = {"need_source": "a list needs its provenance: send {field}",
              "need_basis": "a list needs its acquisition basis: send {field} (consent, "
                            "member_file or rented_file)",
              "field": "{field}"}


def api_fields(message: str) -> str:
    """An import error as the API says it: its fields, not the CLI's flags."""
    for cli, key, field in i18n.FLAG_FIELDS:
        message = message.replace(cli, _API_WORDS[key].format(field=field))
    return message


def upload_contacts(cfg: Config, store: StoreBackend, campaign: str, data: bytes,
                    filename: str, *, source: str, basis: str | None,
                    acquired_on: str | None, now: datetime) -> dict[str, Any]:
    """`ivr contacts import` for the console: the same import, its rejects and warnings
    (PartialUpload: those found before a fatal line, with the batches written before it)."""
    own = campaign == cfg.campaign.name
    # Another campaign's config is not this console's: the countries it allows are unknown,
    # so only the default's (none foreign) are taken; its operator imports the rest with it.
    allow = frozenset(cfg.contacts.allow_countries) if own else frozenset()
    said = OTHER_COUNTRIES.format(campaign=campaign) if not own and cfg.contacts.allow_countries \
        else None  # with the answer, partial or whole: it explains its foreign rejects
    path = _spooled(data, filename)
    try:
        rep = contacts_mod.import_csv(
            store, path, campaign=campaign, source=source, basis=basis or None,
            acquired_on=acquired_on or None, default_region=cfg.default_region, now=now,
            allow_countries=allow, default_tz=cfg.schedule.timezone)
    except contacts_mod.PartialImportError as exc:  # the CLI lists these rejects: so do we
        got = exc.report
        if said:
            got.warnings.append(said)
        raise PartialUpload(str(exc), {**_answer(got), "partial": True,
                                       "imported": got.added + got.merged + got.unchanged}
                            ) from exc
    finally:
        _cleanup(path)
    if said:
        rep.warnings.append(said)
    return _answer(rep)


class PartialUpload(ImportFileError):
    """A fatal line after some batches were written. `result`: a normal upload's answer for
    the lines before it (rejects, warnings, counts) and `imported`, how many of them are in
    the store (each non-blank line is added, merged, unchanged or rejected)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def _answer(rep: contacts_mod.ImportReport) -> dict[str, Any]:
    return {"added": rep.added, "merged": rep.merged, "unchanged": rep.unchanged,
            "opted_out": rep.opted_out, "duplicates": rep.duplicates,
            "withdrawn": rep.withdrawn, "rejected_total": rep.rejected_total,
            "rejected": [{"line": line, "reason": reason} for line, reason in rep.rejected],
            "warnings": list(rep.warnings), "summary": rep.summary()}


def rejects_csv(rejected: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("line", "reason"))
    for r in rejected:
        writer.writerow((r["line"], r["reason"]))
    return out.getvalue()


def contacts_view(store: StoreBackend, campaign: str, lists: list[dict[str, Any]], *,
                  source: str | None = None, status: str | None = None, limit: int = 100,
                  offset: int = 0) -> dict[str, Any]:
    """A page of the campaign's contacts, with its lists per source (`lists`: lists_of's rows,
    which the caller may keep a few seconds: they count every contact)."""
    offset = max(0, min(offset, MAX_OFFSET))  # a 64-bit bound: the stores' OFFSET overflows
    limit = max(1, min(limit, 1000))  # echoed as applied: a script pages by it
    return {"campaign": campaign, "lists": lists,
            "contacts": [dict(r) for r in store.contacts_page(
                campaign, source=source or None, status=status or None,
                limit=limit, offset=offset)],
            "limit": limit, "offset": offset}


# -- the opposition list ------------------------------------------------------------------------
def optout_add(cfg: Config, store: StoreBackend, number: str, via: str, user: str,
               now: datetime) -> dict[str, Any]:
    e164 = privacy.normalise_number(number, cfg.default_region)
    new = privacy.optout_add(store, e164, via, now, cfg.default_region)
    # The store's own `optout` row has no actor: this one names who typed it in.
    store.audit("optout_console", e164, {"via": via, "new": new}, now, actor=user)
    return {"number": e164, "added": new}


def optout_import(cfg: Config, store: StoreBackend, data: bytes, filename: str, via: str,
                  user: str, now: datetime) -> dict[str, Any]:
    privacy.check_via(via)  # chosen: the page's « — choisir — » sent "", taken for post
    path = _spooled(data, filename)
    kept = _Counting(store)
    try:
        added, rejected = contacts_mod.import_optouts(
            kept, path, via=via, default_region=cfg.default_region, now=now)
    except Exception as exc:
        # Stopped part-way (a broken line, the store gone): what it added stays listed (each
        # number is its own transaction), so its row names the user, and the refusal says how
        # many are listed already.
        with suppress(Exception):  # a store that is gone fails this too: the cause is exc
            store.audit("optout_import_console", None, {"via": via, "added": kept.added,
                                                        "complete": False}, now, actor=user)
        if kept.added and isinstance(exc, (ValueError, IvrError)):
            raise ImportStopped(str(exc), kept.added) from exc
        raise
    finally:
        _cleanup(path)
    store.audit("optout_import_console", None, {"via": via, "added": added,
                                                "rejected": len(rejected)}, now, actor=user)
    return {"added": added, "rejected": [{"line": ln, "reason": r} for ln, r in rejected]}


class ImportStopped(IvrError):
    """An opposition import refused part-way (its message is the cause's): `added` numbers
    before the faulty line are on the list already, and stay there."""

    def __init__(self, message: str, added: int) -> None:
        super().__init__(message)
        self.added = added


class _Counting:
    """The store, counting the oppositions an import added so far."""

    def __init__(self, store: StoreBackend) -> None:
        self._store, self.added = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def add_optout(self, number: str, via: str, now: datetime, *args: Any, **kw: Any) -> bool:
        new = bool(self._store.add_optout(number, via, now, *args, **kw))
        self.added += new
        return new


def optout_lookup(cfg: Config, store: StoreBackend, number: str) -> dict[str, Any]:
    e164 = privacy.normalise_number(number, cfg.default_region)
    row = store.optout_of(e164)
    return {"number": e164, "opted_out": row is not None,
            "via": row["via"] if row else None, "at": row["created_at"] if row else None,
            "campaign": row["campaign"] if row else None}


# -- a person's rights ----------------------------------------------------------------------------
def consent(cfg: Config, store: StoreBackend, number: str) -> dict[str, Any]:
    """`ivr consent show`: every consent, refusal and opposition with the prompts heard, then
    every campaign the number was part of."""
    e164 = privacy.normalise_number(number, cfg.default_region)
    proof = [{**row, "heard": heard_prompts(cfg, row.get("heard_sha256"))}
             for row in privacy.consent_proof(store, e164)]
    return {"number": e164, "proof": proof, "campaigns": privacy.campaigns_of(store, e164)}


def export(cfg: Config, store: StoreBackend, number: str, now: datetime) -> dict[str, Any]:
    return privacy.gdpr_export(store, privacy.normalise_number(number, cfg.default_region), now)


def erase(cfg: Config, store: StoreBackend, number: str, confirm: str,
          now: datetime) -> dict[str, Any]:
    """Erasure after a confirmation: the number typed twice, both the same person."""
    e164 = privacy.normalise_number(number, cfg.default_region)
    try:
        again = privacy.normalise_number(confirm or "", cfg.default_region)
    except Exception:  # noqa: BLE001 - any unreadable confirmation is a mismatch
        again = ""
    if again != e164:
        raise ValueError(f"confirm: type the number {e164} again to confirm the erasure")
    cooldown = timedelta(days=cfg.schedule.refusal_cooldown_days)  # how long a refusal holds
    return {"number": e164, **privacy.gdpr_erase(store, e164, now, cooldown)}
