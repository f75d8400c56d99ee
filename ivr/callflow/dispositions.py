"""How Asterisk's answers map to outcomes (pure): Originate reasons, Q.850 causes, SIP codes."""
from __future__ import annotations


# OriginateResponse Reason (Asterisk's AST_CONTROL_* of the last frame seen).
REASON_OUTCOME = {5: "busy", 3: "no_answer", 8: "congestion"}
REASON_CONGESTION = 8

# Q.850 hangup causes. SIP codes arrive already mapped by chan_pjsip:
# 486/600 -> 17, 408 -> 18, 480 -> 19, 404 -> 1, 503 -> 34, 500 -> 38, 504 -> 102.
CAUSE_OUTCOME = {
    17: "busy",
    18: "no_answer", 19: "no_answer",
    34: "congestion", 42: "congestion", 38: "congestion", 41: "congestion", 44: "congestion",
    102: "congestion",  # SIP 504 Server Time-out: the carrier's timer, not the callee
    27: "congestion",  # SIP 502 Bad Gateway: the carrier's gateway, not the callee's number
    # SIP 501 and 402 (credit gone): the carrier's account or gateway, never the callee's:
    # retried, so a trunk failing every call does not exhaust the list before the breaker trips
    29: "congestion", 127: "congestion",
    1: "failed", 3: "failed", 21: "failed", 28: "failed",
}
# A failed Originate with no cause at all (Reason 0 and no Hangup: Asterisk could not even
# create the channel, e.g. the carrier's contact Unavailable to qualify) says nothing of the
# number: retried like congestion, and counted by the carrier breaker, never final `failed`.
NO_CAUSE_OUTCOME = "congestion"

# Causes a carrier refusing the whole trunk gives on every call (ivr/campaign/carrier_guard.py),
# with what the operator should look at. 21 is also a callee's decline (603): only a long run
# of them on one node says it is the trunk.
CARRIER_CAUSES = {
    21: "call rejected: SIP 401/403/407, or 603",
    58: "bearer capability not available: SIP 488",
    34: "no circuit available: SIP 503",
    38: "network out of order: SIP 500",
    42: "switching equipment congestion",
    102: "recovery on timer expiry: SIP 504",
    27: "destination out of order: SIP 502",
    29: "facility rejected: SIP 501",
    # chan_pjsip's cause for every 4xx and 6xx it does not map itself
    127: "interworking: a SIP answer chan_pjsip does not map, e.g. 402 (the account's "
         "credit), 607/608 (rejected as unwanted), 428/436-438 (the caller ID's signature)",
}
NO_CAUSE = ("Originate failed with no cause (the carrier unreachable: its contact Unavailable "
            "to qualify, or dialer.dial_string's endpoint unknown)")


def unanswered_outcome(reason: int | None, cause: int | None) -> str:
    """Outcome of an Originate that was not answered. Reason is the stronger signal; the hangup
    cause decides when the reason only says 'hung up' (1) or 'failed' (0)."""
    if reason in REASON_OUTCOME:
        return REASON_OUTCOME[reason]
    if cause is not None and cause in CAUSE_OUTCOME:
        return CAUSE_OUTCOME[cause]
    return NO_CAUSE_OUTCOME if no_cause(reason, cause) else "failed"


def no_cause(reason: int | None, cause: int | None) -> bool:
    """A failure that says nothing of the callee: no busy/no-answer/congestion reason and no
    hangup cause (None, or 0: Asterisk's 'not defined')."""
    return reason not in REASON_OUTCOME and not cause


def carrier_refusal(reason: int | None, cause: int | None) -> str | None:
    """What a carrier refusing or congested said of an unanswered Originate ('cause 34 (no
    circuit available: SIP 503)'), None when it was something else (busy, no answer, a number
    that does not exist).
    Same precedence as unanswered_outcome: a busy or no-answer reason wins over the cause."""
    if reason in REASON_OUTCOME and reason != REASON_CONGESTION:
        return None
    if cause is not None and cause in CARRIER_CAUSES:
        return f"cause {cause} ({CARRIER_CAUSES[cause]})"
    if no_cause(reason, cause):
        return NO_CAUSE
    return "Originate reason 8 (congestion)" if reason == REASON_CONGESTION else None


def as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
