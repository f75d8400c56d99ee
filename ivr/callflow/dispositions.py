"""How Asterisk's answers map to outcomes (pure): Originate reasons, Q.850 causes, SIP codes."""
from __future__ import annotations


# OriginateResponse Reason (Asterisk's AST_CONTROL_* of the last frame seen).
REASON_OUTCOME = {5: "busy", 3: "no_answer", 8: "congestion"}

# Q.850 hangup causes. SIP codes arrive already mapped by chan_pjsip:
# 486/600 -> 17, 408 -> 18, 480 -> 19, 404 -> 1, 503 -> 34.
CAUSE_OUTCOME = {
    17: "busy",
    18: "no_answer", 19: "no_answer",
    34: "congestion", 42: "congestion", 38: "congestion", 41: "congestion", 44: "congestion",
    1: "failed", 3: "failed", 21: "failed", 27: "failed", 28: "failed",
}


def unanswered_outcome(reason: int | None, cause: int | None) -> str:
    """Outcome of an Originate that was not answered. Reason is the stronger signal; the hangup
    cause decides when the reason only says 'hung up' (1) or 'failed' (0)."""
    if reason in REASON_OUTCOME:
        return REASON_OUTCOME[reason]
    if cause is not None and cause in CAUSE_OUTCOME:
        return CAUSE_OUTCOME[cause]
    return "failed"


def as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
