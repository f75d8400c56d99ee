"""The report: exact counts on a hand-built store, the calls CSV and its formula guard, tables."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from rich.console import Console

from conftest import add_contact
from ivr.records.report import CSV_COLUMNS, calls_csv, render, summary
from ivr.store import Store

TS = "2025-03-04T10:00:00.000Z"

# (number, source, status)
CONTACTS = [
    ("+33199000001", "members", "done"),
    ("+33199000002", "members", "done"),
    ("+33199000003", "members", "exhausted"),
    ("+33199000004", "rented", "opted_out"),
    ("+33199000005", "rented", "pending"),
    ("+33199000006", "rented", "done"),
]
# (contact index or None, attempt, campaign, outcome)
CALLS: list[tuple[int | None, int, str, str | None]] = [
    (0, 1, "spring", "busy"),
    (0, 2, "spring", "message_played"),
    (1, 1, "spring", "message_partial"),
    (2, 1, "spring", "no_answer"),
    (2, 2, "spring", "no_answer"),
    (3, 1, "spring", "opted_out"),
    (4, 1, "spring", "machine"),
    (5, 1, "spring", "declined"),
    (4, 2, "spring", None),              # in flight
    (5, 1, "autumn", "message_played"),  # another campaign
    (None, 1, "spring", "failed"),       # no contact row
]


def build(store: Store) -> Store:
    ids = []
    for number, source, status in CONTACTS:
        ids.append(add_contact(store, number, at=TS, source=source, status=status,
                               campaigns=("spring",))["id"])  # the lists of spring
    for i, (contact, attempt, campaign, outcome) in enumerate(CALLS, start=1):
        number = CONTACTS[contact][0] if contact is not None else "+33199000099"
        store.db.execute(
            "INSERT INTO calls (contact_id, number, attempt, campaign, caller_id, channel_id, "
            "started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ids[contact] if contact is not None else None, number, attempt, campaign,
             "+33100000000", f"ivr-x-{i}", TS, outcome))
    for n in ("+33199000004", "+33199000077"):
        store.db.execute("INSERT INTO optouts (number_hash, number, via, created_at) "
                         "VALUES (?, ?, 'phone-key', ?)", (store.number_hash(n), n, TS))
    return store


def test_summary_counts_are_exact_for_one_campaign(store: Store) -> None:
    data = summary(build(store), "spring")
    assert data["outcomes"] == {"message_played": 1, "message_partial": 1, "declined": 1,
                                "opted_out": 1, "machine": 1, "busy": 1, "no_answer": 2,
                                "failed": 1}
    assert (data["attempts"], data["in_flight"]) == (10, 1)
    assert data["answered"] == 5            # played, partial, declined, opted_out, machine
    assert data["human_answered"] == 4      # the machine is not a person
    assert data["consents"] == 2
    assert data["consent_rate"] == 0.5      # 2 said yes / 4 human answers
    assert data["completion_rate"] == 0.5   # 1 played / 2 said yes
    assert data["per_attempt"] == {
        1: {"message_partial": 1, "declined": 1, "opted_out": 1, "machine": 1, "busy": 1,
            "no_answer": 1, "failed": 1},
        2: {"message_played": 1, "no_answer": 1},
    }
    assert data["contacts"] == {"pending": 1, "done": 3, "exhausted": 1, "opted_out": 1}
    assert data["per_source"] == {
        "members": {"contacts": 3, "statuses": {"done": 2, "exhausted": 1},
                    "outcomes": {"message_played": 1, "message_partial": 1, "busy": 1,
                                 "no_answer": 2}},
        "rented": {"contacts": 3, "statuses": {"done": 1, "opted_out": 1, "pending": 1},
                   "outcomes": {"declined": 1, "opted_out": 1, "machine": 1}},
        "(no contact)": {"contacts": 0, "statuses": {}, "outcomes": {"failed": 1}},
    }
    assert data["optouts"] == 2
    assert data["campaign"] == "spring"


def test_summary_over_all_campaigns_includes_the_other_one(store: Store) -> None:
    data = summary(build(store))
    assert data["attempts"] == 11
    assert data["outcomes"]["message_played"] == 2
    assert data["human_answered"] == 5
    assert data["consent_rate"] == 0.6               # 3 / 5
    assert data["completion_rate"] == pytest.approx(0.6667)  # 2 / 3, rounded to 4 places
    assert data["per_source"]["rented"]["outcomes"]["message_played"] == 1
    assert data["contacts"] == summary(store, "spring")["contacts"]  # not per campaign


def test_summary_of_an_empty_store_has_null_rates_and_is_json(store: Store) -> None:
    data = summary(store)
    assert data["consent_rate"] is None and data["completion_rate"] is None
    assert (data["attempts"], data["answered"], data["optouts"]) == (0, 0, 0)
    assert data["outcomes"] == {} and data["per_attempt"] == {} and data["per_source"] == {}
    assert data["contacts"] == {"pending": 0, "done": 0, "exhausted": 0, "opted_out": 0}
    assert json.loads(json.dumps(data))["consent_rate"] is None


def test_only_machines_answered_gives_no_consent_rate(store: Store) -> None:
    store = build(store)
    store.db.execute("UPDATE calls SET outcome = 'machine' WHERE outcome IN ("
                     "'message_played', 'message_partial', 'declined', 'opted_out')")
    data = summary(store, "spring")
    assert (data["answered"], data["human_answered"]) == (5, 0)
    assert data["consent_rate"] is None and data["completion_rate"] is None


def read_csv(store: Store, campaign: str | None = None) -> list[dict[str, str]]:
    out = io.StringIO()
    n = calls_csv(store, out, campaign=campaign)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert n == len(rows)
    return rows


def test_calls_csv_has_one_row_per_call_with_every_column(store: Store) -> None:
    out = io.StringIO()
    calls_csv(build(store), out, campaign="spring")
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(header) == CSV_COLUMNS
    rows = read_csv(store, "spring")
    assert len(rows) == 10 and {r["campaign"] for r in rows} == {"spring"}
    first = rows[0]
    assert first["id"] == "1" and first["number"] == "+33199000001"
    assert (first["source"], first["attempt"], first["outcome"]) == ("members", "1", "busy")
    assert first["caller_id"] == "+33100000000" and first["channel_id"] == "ivr-x-1"
    assert first["answered_at"] == "" and first["prompts_sha256"] == "{}"
    in_flight = next(r for r in rows if r["channel_id"] == "ivr-x-9")
    assert in_flight["outcome"] == ""
    orphan = next(r for r in rows if r["channel_id"] == "ivr-x-11")
    assert (orphan["contact_id"], orphan["source"]) == ("", "")
    assert len(read_csv(store)) == 11


def test_calls_csv_neutralises_formulas_but_keeps_numbers(store: Store) -> None:
    store = build(store)
    store.db.execute("UPDATE contacts SET source = '=HYPERLINK(\"http://x\")' WHERE id = 1")
    # A call's list is its campaign's binding's (schema 19): the formula goes there too
    store.db.execute("UPDATE campaign_contacts SET source = '=HYPERLINK(\"http://x\")' "
                     "WHERE contact_id = 1")
    store.db.execute("UPDATE calls SET stage = '+cmd|calc', keys = '-2+3', "
                     "hangup_cause = '@SUM(A1)', caller_id = '+33 1 =evil' WHERE id = 1")
    store.db.execute("UPDATE calls SET number = '=1+2' WHERE id = 2")
    rows = read_csv(store, "spring")
    first = rows[0]
    assert first["source"] == "'=HYPERLINK(\"http://x\")"
    assert (first["stage"], first["keys"], first["hangup_cause"]) == (
        "'+cmd|calc", "'-2+3", "'@SUM(A1)")
    assert first["caller_id"] == "'+33 1 =evil"  # a phone column, but not a plain E.164
    assert first["number"] == "+33199000001"     # E.164 kept intact
    assert rows[1]["number"] == "'=1+2"
    assert rows[2]["caller_id"] == "+33100000000"


def text_of(data: dict[str, Any]) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render(data))
    return console.export_text()


def test_render_shows_counts_percentages_and_rates(store: Store) -> None:
    text = text_of(summary(build(store), "spring"))
    assert "campaign spring: 10 attempt(s), 1 in flight, 5 answered (4 by a person)" in text
    assert "no_answer" in text and "22.2 %" in text  # 2 of the 9 ended calls
    assert "50.0 % (2 of 4 human answers)" in text
    assert "50.0 % (1 of 2 consents)" in text
    assert "message_played 1, no_answer 1" in text        # attempt 2
    assert "members" in text and "done 2, exhausted 1" in text
    assert "(no contact)" in text
    assert "opposition list: 2 number(s)" in text
    assert "exhausted" in text and "16.7 %" in text       # 1 of 6 contacts


def test_render_of_an_empty_store_does_not_invent_numbers(store: Store) -> None:
    text = text_of(summary(store))
    assert "all campaigns: 0 attempt(s)" in text
    assert "no call has ended yet" in text
    assert "— (no human answers yet)" in text and "— (no consents yet)" in text
