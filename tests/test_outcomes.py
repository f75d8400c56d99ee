"""The outcome table is the one list: what the flow and the dispositions produce is in it, and
the store and the report derive from it."""
from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import add_contact, attempt
from ivr.callflow import dispositions, outcomes
from ivr.records import report
from ivr.store import Store

FLOW = Path(__file__).resolve().parents[1] / "ivr" / "callflow" / "flow.py"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def _values(expr: ast.AST) -> set[str]:
    """The strings an expression can evaluate to (a conditional's two branches, not its test)."""
    if isinstance(expr, ast.IfExp):
        return _values(expr.body) | _values(expr.orelse)
    return _strings(expr) if isinstance(expr, ast.Constant) else set()


def flow_outcomes(source: str) -> set[str]:
    """Every outcome literal of the flow: assigned to `.outcome`, passed as outcome= or to
    finish(), compared with `.outcome`, or returned by a function named *outcome*."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "outcome" for t in node.targets):
            found |= _strings(node.value)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name == "finish" and node.args:
                found |= _strings(node.args[0])
            found |= {s for k in node.keywords if k.arg == "outcome" for s in _strings(k.value)}
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and \
                node.left.attr == "outcome":
            found |= {s for c in node.comparators for s in _strings(c)}
        elif isinstance(node, ast.FunctionDef) and "outcome" in node.name:
            found |= {s for r in ast.walk(node) if isinstance(r, ast.Return) and r.value
                      is not None for s in _values(r.value)}
    return found


def test_every_outcome_the_flow_can_produce_is_in_the_table() -> None:
    found = flow_outcomes(FLOW.read_text())
    # The scan must see the flow's outcomes, else it proves nothing.
    assert {"error", "opted_out", "message_played", "no_input", "machine", "declined",
            "message_partial", "declined_partial", "hangup_intro"} <= found
    assert found - outcomes.OUTCOMES == set()


def test_the_scan_would_catch_an_outcome_missing_from_the_table() -> None:
    code = ("def f(call):\n    call.state.outcome = 'voicemail'\n    call.finish('lost')\n"
            "def g_outcome(s):\n    return 'fax' if 'x' in s else 'busy'\n")
    assert flow_outcomes(code) - outcomes.OUTCOMES == {"voicemail", "lost", "fax"}


def test_every_disposition_is_in_the_table() -> None:
    produced = set(dispositions.REASON_OUTCOME.values()) | set(
        dispositions.CAUSE_OUTCOME.values()) | {dispositions.unanswered_outcome(None, None)}
    assert produced - outcomes.OUTCOMES == set()


def test_the_report_orders_every_outcome_of_the_table_in_table_order() -> None:
    assert tuple(report.OUTCOME_ORDER) == outcomes.ORDER
    assert set(report.OUTCOME_ORDER) == outcomes.OUTCOMES
    assert set(report.CONSENTED) <= report.HUMAN_ANSWERED <= outcomes.ANSWERED
    shuffled = {o: 1 for o in reversed(outcomes.ORDER)} | {"zz_unknown": 2}
    assert list(report._ordered(shuffled)) == [*outcomes.ORDER, "zz_unknown"]


@pytest.mark.parametrize("outcome", outcomes.ORDER)
@pytest.mark.parametrize("retry", [True, False])
def test_the_store_settles_the_contact_as_the_table_says(
        store: Store, outcome: str, retry: bool) -> None:
    s = store
    c = add_contact(s, "+33162000010", at=T0)
    call = attempt(s, c, "c1", "+33162000000", T0)
    assert s.finish_unanswered(call["id"], outcome, None, T0,
                               T0 + timedelta(hours=1) if retry else None)
    status = s.one("SELECT status FROM contacts")["status"]  # type: ignore[index]
    assert status == outcomes.contact_status(outcome, retry_planned=retry)
    assert status in outcomes.CONTACT_STATUSES
