"""Preflight for a whole campaign: config rules, legal mentions, consent first, and the lists
about to be called."""
from __future__ import annotations

from ivr.config import Config
from ivr.compliance.consent_first import intro_problems, slot_problems
from ivr.compliance.preflight import ERROR, Violation, preflight, raise_on_errors
from ivr.compliance.prompt_legal import missing_legal_items
from ivr.store.base import StoreBackend

__all__ = ["check_campaign", "raise_on_errors"]


def list_sources(store: StoreBackend) -> list[dict[str, object]]:
    """Provenance of every list that still has contacts to call."""
    return store.pending_sources()


def prompt_violations(cfg: Config) -> list[Violation]:
    """Legal mentions, the consent-first intro and the time slot (pure: the config only)."""
    legal = [Violation("legal_mentions", problem, ERROR) for problem in missing_legal_items(cfg)]
    intro = [Violation("consent_first", problem, ERROR) for problem in intro_problems(cfg)]
    slot = [Violation("ask_slot", message, severity) for severity, message in slot_problems(cfg)]
    return legal + intro + slot


def check_campaign(cfg: Config, store: StoreBackend) -> list[Violation]:
    # The pending callees let preflight refuse a fiction caller ID that would call real people.
    callees = [str(c["number"]) for c in store.pending_contacts()]
    return prompt_violations(cfg) + preflight(cfg, sources=list_sources(store), callees=callees)
