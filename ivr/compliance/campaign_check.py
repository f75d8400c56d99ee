"""Preflight for a whole campaign: config rules, legal mentions, consent first, and the lists
about to be called."""
from __future__ import annotations

from collections.abc import Iterator

from ivr.config import Config
from ivr.compliance.consent_first import intro_problems, slot_problems
from ivr.compliance.preflight import ERROR, WARNING, Violation, preflight, raise_on_errors
from ivr.compliance.prompt_legal import missing_legal_items
from ivr.store.base import StoreBackend

__all__ = ["check_campaign", "raise_on_errors"]


def list_sources(store: StoreBackend, campaign: str) -> list[dict[str, object]]:
    """Provenance, for this campaign, of every list it still has contacts to call."""
    return store.pending_sources(campaign)


def unbound_violations(store: StoreBackend, campaign: str) -> list[Violation]:
    """Lists imported before campaigns existed: no run calls them until they are bound."""
    return [Violation("unbound_list", f"list {r['source']!r}: {r['contacts']} contact(s) "
                      "belong to no campaign and are not called: bind them with `ivr contacts "
                      f"share --source {r['source']} --campaign {campaign} --basis BASIS`",
                      WARNING) for r in store.unbound_sources()]


def prompt_violations(cfg: Config) -> list[Violation]:
    """Legal mentions, the consent-first intro and the time slot (pure: the config only)."""
    legal = [Violation("legal_mentions", problem, ERROR) for problem in missing_legal_items(cfg)]
    intro = [Violation("consent_first", problem, ERROR) for problem in intro_problems(cfg)]
    slot = [Violation("ask_slot", message, severity) for severity, message in slot_problems(cfg)]
    return legal + intro + slot


def _pending_numbers(store: StoreBackend, campaign: str) -> Iterator[str]:
    """Read only when iterated: only a fiction caller ID looks at the callees (every pending
    contact read at each check and run, 100,000 rows held for nothing, before)."""
    for c in store.pending_contacts(campaign):
        yield str(c["number"])


def check_campaign(cfg: Config, store: StoreBackend) -> list[Violation]:
    # The pending callees let preflight refuse a fiction caller ID that would call real people.
    name = cfg.campaign.name
    callees = _pending_numbers(store, name)
    return (prompt_violations(cfg) + unbound_violations(store, name)
            + preflight(cfg, sources=list_sources(store, name), callees=callees))
