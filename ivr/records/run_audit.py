"""What a run records about itself when it starts: the décret override and its reason
(issue 16 item 2: a deliberate departure from Décret 2022-1313 leaves a trace in the audit),
and how far back its calling rules read (`run_rules`), which a purge run with another
campaign's config must not cut into (records/privacy.py `purge`)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ivr.compliance.preflight import OVERRIDE_KEY, Violation
from ivr.config import Config
from ivr.config_checks import rules_lookback_days
from ivr.store.base import StoreBackend


def audit_run_start(cfg: Config, store: StoreBackend, violations: Iterable[Violation],
                    now: datetime) -> bool:
    """One `decree_override` audit row when the run goes beyond the décret under
    schedule.override_reason; True if written. The dry run never writes (it changes nothing)."""
    overridden = [v.code for v in violations
                  if not v.is_error and f"overridden by {OVERRIDE_KEY}" in v.message]
    if not overridden:
        return False
    store.audit("decree_override", None, {
        "campaign": cfg.campaign.name, "key": OVERRIDE_KEY,
        "reason": " ".join(cfg.schedule.override_reason.split()), "overridden": overridden}, now)
    return True


RULES_ACTION = "run_rules"


def record_rules(cfg: Config, store: StoreBackend, now: datetime) -> bool:
    """One `run_rules` audit row (campaign, lookback_days) when the campaign's rules read back
    a span other than the one last recorded for it; True if written. Several campaigns share
    a store while `ivr purge` knows only its own config: without this, a campaign with a
    60-day refusal cooldown purged the refusals another campaign keeps for 120."""
    days = rules_lookback_days(cfg.schedule)
    if lookbacks(store).get(cfg.campaign.name) == days:
        return False
    store.audit(RULES_ACTION, None, {"campaign": cfg.campaign.name, "lookback_days": days}, now)
    return True


def lookbacks(store: StoreBackend) -> dict[str, int]:
    """Each campaign's rules lookback in days, as its latest run start recorded it."""
    return {str(d["campaign"]): int(d["lookback_days"]) for d in store.audit_details(RULES_ACTION)
            if "campaign" in d and "lookback_days" in d}
