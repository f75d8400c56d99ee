"""Preflight for a whole campaign: config rules, legal mentions, and the lists about to be called."""
from __future__ import annotations

from ivr.config import Config
from ivr.compliance.preflight import ERROR, Violation, preflight, raise_on_errors
from ivr.compliance.prompt_legal import missing_legal_items
from ivr.store.base import StoreBackend

__all__ = ["check_campaign", "raise_on_errors"]


def list_sources(store: StoreBackend) -> list[dict[str, object]]:
    """Provenance of every list that still has contacts to call."""
    return store.pending_sources()


def check_campaign(cfg: Config, store: StoreBackend) -> list[Violation]:
    legal = [Violation("legal_mentions", problem, ERROR) for problem in missing_legal_items(cfg)]
    return legal + preflight(cfg, sources=list_sources(store))
