"""Another controller's guess never hides what the call really gave.

When a controller's lease looks expired (its heartbeat late, the store slow to it) another one
settles its open attempts as `error`, stage `orphaned` (campaign/pool_watch.py). If the first
controller was alive after all, its own result arrives later: the callee's refusal, consent or
busy line replaces the guess (found in review: the refusal was dropped, the contact went back to
`pending` with a 10-minute retry, and the refusal cooldown did not hold). A claimed attempt the
first controller then withdraws (its Originate never left) goes, guess and all. Both backends
(conftest.store).
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from ivr.callflow.outcomes import contact_status
from ivr.store import CallResult, History, Store, utc

from test_store_claim import T0, Yes, add, claim

GUESS = CallResult(outcome="error", stage="orphaned", keys="", heard={})  # pool_watch's
REFUSAL = CallResult(outcome="declined", stage="ask", keys="2", heard={}, choice="refusal",
                     choice_key="2")


def history_after(s: Store, contact: dict, days: int) -> History:
    seen: list[History] = []

    def judge(h: History) -> Yes:
        seen.append(h)
        return Yes()
    claim(s, contact, judge, now=T0 + timedelta(days=days), campaign="c2")
    return seen[0]


def test_a_refusal_that_lands_after_another_controllers_guess_replaces_it(store: Store) -> None:
    s = store
    contact = add(s)
    call = claim(s, contact).call
    assert call is not None
    s.mark_answered(call["id"], T0)
    s.finish_answered(call["id"], GUESS, T0 + timedelta(seconds=20), T0 + timedelta(minutes=10))
    assert s.call(call["id"])["outcome"] == "error"  # the guess, with its retry
    cause = s.finish_answered(call["id"], REFUSAL, T0 + timedelta(seconds=21))
    assert cause is not None
    row = s.call(call["id"])
    assert (row["outcome"], row["stage"], row["keys"], row["retry_at"]) == \
        ("declined", "ask", "2", None)
    assert [r["kind"] for r in s.q("SELECT kind FROM consents")] == ["refusal"]
    status = s.one("SELECT status FROM contacts")["status"]
    assert status == contact_status("declined", retry_planned=False) != "pending"  # no retry
    assert history_after(s, contact, 1).last_refusal is not None  # the cooldown holds


def test_an_error_never_replaces_an_outcome_and_a_guess_is_replaced_once(store: Store) -> None:
    s = store
    call = claim(s, add(s)).call
    assert call is not None
    s.finish_unanswered(call["id"], "error", None, T0, T0 + timedelta(minutes=10),
                        stage="orphaned")
    assert s.finish_unanswered(call["id"], "error", None, T0, None, stage="no-ivr-report") \
        is False  # an error is no better than the guess: the first stands
    assert s.finish_unanswered(call["id"], "busy", "17", T0, T0 + timedelta(hours=1))
    assert (s.call(call["id"])["outcome"], s.call(call["id"])["stage"]) == ("busy", None)
    assert s.finish_unanswered(call["id"], "no_answer", "19", T0, None) is False  # not a guess
    assert s.finish_answered(call["id"], REFUSAL, T0) is None
    assert s.call(call["id"])["outcome"] == "busy"


def test_a_withdrawal_after_another_controllers_guess_leaves_the_guess(store: Store) -> None:
    """The guess settled the contact (its retry, or `exhausted` on the last attempt) and a
    later attempt counts its number from it: deleting it would undo neither."""
    s = store
    call = claim(s, add(s)).call
    assert call is not None
    s.finish_unanswered(call["id"], "error", None, T0, T0 + timedelta(minutes=10),
                        stage="orphaned")
    assert not s.withdraw_attempt(call["id"])
    assert s.call(call["id"])["outcome"] == "error"


def guessed_then_retried(s: Store) -> tuple[dict, dict, dict]:
    """A contact bound to c1, its first attempt guessed orphaned by another controller (a
    retry in 10 minutes), and that retry placed: (contact, first attempt, retry)."""
    contact = add(s)
    s.db.execute("INSERT INTO campaign_contacts (contact_id, campaign, source, status, bound_at)"
                 " VALUES (?, 'c1', 'list', 'pending', ?)", (contact["id"], utc(T0)))
    first = claim(s, contact).call
    assert first is not None
    s.finish_unanswered(first["id"], "error", None, T0, T0 + timedelta(minutes=10),
                        stage="orphaned")
    retry = claim(s, contact, now=T0 + timedelta(minutes=11)).call
    assert retry is not None and retry["attempt"] == 2
    return contact, first, retry


def test_a_late_result_never_reopens_a_contact_a_later_attempt_settled(store: Store) -> None:
    """Found in review: the guess's retry was placed and the callee heard the message; the
    first controller's delayed `no_answer` then replaced the guess and put the contact back
    to `pending`, to be dialled again. The old attempt's row takes the truth; the contact and
    its binding keep what the newest attempt said."""
    s = store
    contact, first, retry = guessed_then_retried(s)
    s.mark_answered(retry["id"], T0 + timedelta(minutes=11))
    played = CallResult(outcome="message_played", stage="message", keys="1", heard={},
                        choice="consent", choice_key="1")
    s.finish_answered(retry["id"], played, T0 + timedelta(minutes=12))
    done = s.one("SELECT status FROM contacts")["status"]
    assert done != "pending"
    assert s.finish_unanswered(first["id"], "no_answer", "19", T0 + timedelta(minutes=13),
                               T0 + timedelta(hours=1))  # the late truth, on its own row
    assert s.call(first["id"])["outcome"] == "no_answer"
    assert s.one("SELECT status FROM contacts")["status"] == done
    assert s.one("SELECT status FROM campaign_contacts WHERE campaign = 'c1'")["status"] == done


@pytest.mark.parametrize("retry_first", [True, False])
def test_a_late_answer_finishes_a_contact_its_retry_left_pending(store: Store,
                                                                 retry_first: bool) -> None:
    """Found in review: the reverse case. The guess's retry rang out (`no_answer`, retried),
    then the first controller's real result landed: the callee had heard the message. The
    contact and its binding stayed `pending`, and the person who had heard it was called
    again. Whichever order the two results land in, an answer finishes the contact."""
    s = store
    contact, first, retry = guessed_then_retried(s)
    played = CallResult(outcome="message_played", stage="message", keys="1", heard={},
                        choice="consent", choice_key="1")
    rang_out = (retry["id"], "no_answer", "19", T0 + timedelta(minutes=12),
                T0 + timedelta(hours=1))
    if retry_first:
        s.finish_unanswered(*rang_out)
    assert s.finish_answered(first["id"], played, T0 + timedelta(minutes=13)) is not None
    if not retry_first:
        s.finish_unanswered(*rang_out)
    assert s.call(first["id"])["outcome"] == "message_played"
    assert s.one("SELECT status FROM campaign_contacts WHERE campaign = 'c1'")["status"] == \
        "done"
    assert s.one("SELECT status FROM contacts")["status"] == "done"
    assert claim(s, contact, now=T0 + timedelta(hours=2)).call is None  # never dialled again
