"""A list's second use: `ivr contacts share` binds one campaign's list to another, with that
campaign's own legal basis, as a deliberate step recorded in the audit table."""
from __future__ import annotations

from datetime import datetime

from ivr.errors import ImportFileError
from ivr.records.import_report import provenance
from ivr.store.base import StoreBackend


def share_list(store: StoreBackend, *, source: str, campaign: str, basis: str | None,
               now: datetime, from_campaign: str) -> int:
    """Bind list `source` of campaign `from_campaign` to one more campaign, with its basis for
    that campaign: the deliberate step a list's second use takes (a list is collected for one
    candidate; two campaigns may each have a list of the same name, and only the named
    campaign's is shared). Recorded in the audit table; returns how many contacts were newly
    bound."""
    source, campaign = (source or "").strip(), (campaign or "").strip()
    if not campaign:
        raise ImportFileError("--campaign is empty: name the campaign that may call this list")
    basis = provenance(source, basis)
    with store.transaction():
        if not store.list_exists(source, from_campaign):
            raise ImportFileError(f"no list named {source!r} for campaign {from_campaign!r} in "
                                  "this store: check --source (the name given to `ivr contacts "
                                  "import`) and --from-campaign")
        bound = store.share_list(source, campaign=campaign, basis=basis, now=now,
                                 from_campaign=from_campaign)
        store.audit("list_shared", None, {"source": source, "from_campaign": from_campaign,
                                          "campaign": campaign, "basis": basis,
                                          "contacts": bound}, now)
    return bound
