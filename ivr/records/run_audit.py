"""What a run records about itself when it starts: the décret override and its reason
(issue 16 item 2: a deliberate departure from Décret 2022-1313 leaves a trace in the audit)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ivr.compliance.preflight import OVERRIDE_KEY, Violation
from ivr.config import Config
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
