"""The one outcome table. Every list of outcomes (store, report, dialer, IVR, flow) derives from it.

An outcome is what one attempt ended as. Its traits:
- answered: somebody or something picked up the line (a machine included);
- retry: the key of `retry.delay_s` whose delay applies before the next attempt, or None when
  the outcome is final for the contact (a choice, a machine, a failed number);
- cut_short: the call ended before the flow did; if the PBX (not the callee) cut it, it is a
  fault and retried as `error`;
- choice: what the outcome means for consent: consent, refusal, optout, or None;
- the table's order is the order of the reports.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OutcomeTraits:
    name: str
    answered: bool
    retry: str | None = None  # key of retry.delay_s, None = final
    cut_short: bool = False
    choice: str | None = None  # consent | refusal | optout
    human: bool = True  # False for a machine: it cannot consent, so it is not a human answer


TABLE: tuple[OutcomeTraits, ...] = (
    OutcomeTraits("message_played", answered=True, choice="consent"),
    OutcomeTraits("message_partial", answered=True, cut_short=True, choice="consent"),
    OutcomeTraits("declined", answered=True, choice="refusal"),
    OutcomeTraits("declined_partial", answered=True, cut_short=True, choice="refusal"),
    OutcomeTraits("no_input", answered=True, cut_short=True),
    OutcomeTraits("hangup_intro", answered=True, cut_short=True),
    OutcomeTraits("opted_out", answered=True, choice="optout"),
    OutcomeTraits("machine", answered=True, human=False),
    OutcomeTraits("busy", answered=False, retry="busy"),
    OutcomeTraits("no_answer", answered=False, retry="no_answer"),
    OutcomeTraits("congestion", answered=False, retry="congestion"),
    OutcomeTraits("failed", answered=False),
    # A fault of the controller or the PBX: retried after the congestion delay, while
    # attempts remain. Counted as answered only when the attempt was (see the store).
    OutcomeTraits("error", answered=False, retry="congestion"),
)

BY_NAME: dict[str, OutcomeTraits] = {t.name: t for t in TABLE}
OUTCOMES: frozenset[str] = frozenset(BY_NAME)
ORDER: tuple[str, ...] = tuple(t.name for t in TABLE)
ANSWERED: frozenset[str] = frozenset(t.name for t in TABLE if t.answered)
UNANSWERED: frozenset[str] = frozenset(t.name for t in TABLE if not t.answered) - {"error"}
HUMAN_ANSWERED: frozenset[str] = frozenset(t.name for t in TABLE if t.answered and t.human)
RETRYABLE: frozenset[str] = frozenset(t.name for t in TABLE if t.retry)
CUT_SHORT: frozenset[str] = frozenset(t.name for t in TABLE if t.cut_short)
CONSENTED: tuple[str, ...] = tuple(t.name for t in TABLE if t.choice == "consent")
CHOICE_OF: dict[str, str] = {t.name: t.choice for t in TABLE if t.choice}

# What the contact becomes after its attempt ended with this outcome.
CONTACT_STATUSES = ("pending", "done", "exhausted", "opted_out")


def traits(name: str) -> OutcomeTraits:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown outcome {name!r}: known are {', '.join(ORDER)}") from None


# What an answer or a choice leaves: the person was reached, whatever attempt came after.
FINAL_STATUSES = frozenset({"done", "opted_out"})


def contact_status(outcome: str, retry_planned: bool) -> str:
    """The contact's status once an attempt ended: a choice or an answer is final."""
    t = traits(outcome)
    if t.choice == "optout":
        return "opted_out"
    if t.answered:
        return "done"
    return "pending" if retry_planned else "exhausted"


def kept_after_fault(name: str) -> bool:
    """Does an attempt a fault cut off (the PBX restarting, a controller exception) keep this
    outcome? A choice once made is kept: a refusal or an opposition is final whatever cut the
    call afterwards, and the contact is done (opted out) as after any such choice. A consent
    cut off is NOT kept, on purpose: the person asked to hear the message and did not, so the
    attempt is an `error`, retried, and they hear it next time. An outcome the flow reached in
    full (not cut short) stands; a cut with no choice yet (intro, no input) is an `error`."""
    t = traits(name)
    return not t.cut_short or t.choice in ("refusal", "optout")


def final_at(choice: str | None, outcome: str) -> bool:
    """Is a choice final once the call has reached `outcome` (what a hangup now gives)? A
    refusal or an opposition the moment it is made; a consent once its message and legal
    mentions were heard (message_played, kept after a fault). The IVR then stores it at once
    (flow.Chosen, store.record_choice): a controller killed later loses nothing."""
    return choice is not None and CHOICE_OF.get(outcome) == choice and kept_after_fault(outcome)


def kept_choice(choices: Iterable[str]) -> str | None:
    """The outcome of an answered call a fault cut (controller killed, PBX gone) once a final
    choice of it is stored: an opposition wins over a refusal or a consent made before it; the
    call was cut, so the cut-short outcome of that choice where the table keeps one (a refusal:
    declined_partial). A consent is stored only once heard in full (final_at): its row means
    message_played. None: no final choice, the attempt is `error` (retried)."""
    stored = set(choices)
    for choice in ("optout", "refusal", "consent"):
        kept = [t for t in TABLE if t.choice == choice and kept_after_fault(t.name)]
        if choice in stored and kept:
            return next((t.name for t in kept if t.cut_short), kept[0].name)
    return None


# What a call still ringing reads as once the run hangs it up: the line went down, nobody said
# anything. A busy line or a congested network is the network's own answer, kept.
RINGING_CUT = frozenset({"failed", "no_answer"})
RUN_HANGUP = "hard-stop"  # the stage (or its prefix) of a call the run hung up, made `error`


def kept_after_run_hangup(name: str) -> bool:
    """Does an attempt that the run itself hung up (hard stop, drain timeout, second Ctrl-C)
    keep this outcome? As after a fault (kept_after_fault) for an answered call: the callee's
    own word stands, a cut consent or intro is `error`, retried; a ringing call's end is ours."""
    if not traits(name).answered:
        return name not in RINGING_CUT
    return kept_after_fault(name)


def ordered(counts: dict[str, int]) -> dict[str, int]:
    """Known outcomes in table order, then anything unexpected (kept visible, not dropped)."""
    known = [o for o in ORDER if o in counts]
    return {o: counts[o] for o in known + sorted(set(counts) - set(known))}


def require_known(names: Iterable[str], where: str) -> None:
    """Refuse at start-up an outcome the table does not know, so none is dropped mid-run."""
    unknown = sorted(set(names) - OUTCOMES)
    if unknown:
        raise ValueError(f"{where} uses outcome(s) {', '.join(unknown)} missing from "
                         "ivr/callflow/outcomes.py: add them to TABLE")
