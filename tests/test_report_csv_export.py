"""report.csv rendered by the store (export_calls_csv, ivr/store/sqlite_export.py and
pg_export.py) is byte for byte the reference: csv.writer over report._safe_cell of each column
of export_calls, as `ivr report --format csv` wrote it before. Random calls over adversarial
values (quotes, commas, CR, LF, formulas, E.164 or not in the phone columns, NULLs, unicode,
empty strings, big and negative integers), on both backends, in batches small enough that
plain batches and batches needing quotes alternate."""
from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest

from conftest import add_contact, sqlite_only
from ivr.records import report
from ivr.records.report import CSV_COLUMNS, _safe_cell
from ivr.store import pg_export, sqlite_export
from ivr.store.sqlite import Store

TEXTS = ["", "plain", "a,b", 'say "hi"', "line\nbreak", "cr\ronly", "crlf\r\n", "=1+2",
         "+cmd|calc", "-2+3", "@SUM(A1)", "\tTab", "\rCR first", "'quoted", "é ü 中文 🎉",
         "+33199000001", "+33 1 99", "+0123", "+12", "+123", "+123456789012345",
         "+1234567890123456", "+1", "+", "-", "=", "@", " lead", "\\.", '"', ",", 'a""b',
         "x,=y", ",+", "+33199000001\n", "١٢٣", "+3319900000١", "{\"intro\": \"ab\"}", "a\x01b",
         "\x01", None]
PHONES = ["+33199000001", "+33100000000", "+123", "+123456789012345"]  # valid E.164
INTS = [1, 2, 0, -1, -2147483648, 2147483647]
T0 = "2026-12-01T10:00:00.000Z"


def reference(store: Any, campaign: str | None) -> tuple[bytes, int]:
    """The old path: csv.writer over _safe_cell of each value of export_calls."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for row in store.export_calls(campaign):
        writer.writerow([_safe_cell(col, row[col]) for col in CSV_COLUMNS])
        n += 1
    return out.getvalue().encode("utf-8"), n


def rendered(store: Any, campaign: str | None) -> tuple[bytes, int]:
    chunks = report.calls_csv_chunks(store, campaign)
    parts: list[bytes] = []
    while True:
        try:
            parts.append(next(chunks))
        except StopIteration as done:
            return b"".join(parts), done.value


def text(rnd: random.Random, plain: str | None, nullable: bool = True) -> str | None:
    value = plain if rnd.random() < 0.6 else rnd.choice(TEXTS)
    return value if value is not None or nullable else "x"


def unique(value: str | None, i: int) -> str | None:
    """channel_id is UNIQUE: the value, then the call's number (its start kept)."""
    return None if value is None or value.endswith(f"-{i}") else f"{value}{i}"


def fill_calls(store: Any, rnd: random.Random, n: int) -> None:
    """n calls over three campaigns, most of them plain (as a run writes them), the others
    with adversarial values in any column; a few with big or negative ids."""
    ids = [add_contact(store, f"+331990{i:05d}", at=T0, source=src)["id"]
           for i, src in enumerate(["list", "a,b", "=evil", 'q"uote', "é"])]
    for i in range(n):
        row: dict[str, Any] = {
            "contact_id": rnd.choice(ids + [None]), "campaign": rnd.choice(["c1", "c1", "c2"]),
            "number": text(rnd, rnd.choice(PHONES), nullable=False),
            "attempt": rnd.choice(INTS) if rnd.random() < 0.3 else 1,
            "channel_id": unique(text(rnd, f"ivr-x-{i}"), i), "started_at": text(rnd, T0, False),
            "answered_at": text(rnd, None), "ended_at": text(rnd, T0),
            "outcome": text(rnd, "busy"), "stage": text(rnd, "intro"),
            "keys": text(rnd, "1", False), "hangup_cause": text(rnd, "16"),
            "prompts_sha256": text(rnd, '{"intro": "ab", "question": "cd"}', False),
            "caller_id": text(rnd, rnd.choice(PHONES))}
        if i % 50 == 7:  # (PostgreSQL's export_calls starts after id 0: no negative ids)
            row["id"] = rnd.choice([2 ** 53 + i, 2 ** 62 + i])
        store.db["calls"].insert(row)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_stores_csv_is_the_reference_byte_for_byte(store: Any, seed: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_export, "BATCH", 7)
    monkeypatch.setattr(pg_export, "BATCH", 7)
    fill_calls(store, random.Random(seed), 400)
    for campaign in ("c1", "c2", None, "nobody"):
        got, want = rendered(store, campaign), reference(store, campaign)
        assert got == want, campaign
    body, n = reference(store, None)
    assert n == 400 and rendered(store, "nobody") == (body[:body.index(b"\r\n") + 2], 0)
    # the values did reach every rule: quotes, doubled quotes, formulas, E.164 kept
    assert b",'=1+2," in body and b',"a,b",' in body and b'"say ""hi"""' in body
    assert b",\"'\rCR first\"," in body and b",+33199000001," in body and b",'+33 1 99," in body


PLAIN = {"number": "+33199000001", "attempt": 1, "campaign": "c1", "started_at": T0,
         "ended_at": T0, "outcome": "busy", "stage": "intro", "keys": "1", "hangup_cause": "16",
         "prompts_sha256": '{"intro": "ab"}', "caller_id": "+33100000000"}
NOT_NULL = {"number", "campaign", "started_at", "keys", "prompts_sha256"}


def test_each_value_alone_in_each_column(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every adversarial value, one column at a time, the rest of its call plain, one call a
    batch: each rule of the bulk check (SQLite) and of the field expressions is met alone."""
    monkeypatch.setattr(sqlite_export, "BATCH", 1)
    monkeypatch.setattr(pg_export, "BATCH", 1)
    plain = add_contact(store, "+33199000000", at=T0)["id"]
    if isinstance(store, Store):  # (PostgreSQL's export_calls starts after id 0)
        store.db["calls"].insert({**PLAIN, "id": -1})  # "'-1"
    columns = ["number", "campaign", "channel_id", "started_at", "answered_at", "ended_at",
               "outcome", "stage", "keys", "hangup_cause", "prompts_sha256", "caller_id"]
    for i, value in enumerate(TEXTS):
        for column in columns:
            if value is None and column in NOT_NULL:
                continue
            odd = unique(value, i * 100 + len(column)) if column == "channel_id" else value
            store.db["calls"].insert({**PLAIN, "contact_id": plain, column: odd})
        if value is not None:  # the source: the call's contact's list
            contact = add_contact(store, f"+3319800{i:04d}", at=T0, source=value)
            store.db["calls"].insert({**PLAIN, "contact_id": contact["id"]})
    for attempt in INTS:
        store.db["calls"].insert({**PLAIN, "contact_id": None, "attempt": attempt})
    got, want = rendered(store, None), reference(store, None)
    assert got == want and want[1] > 12 * len(TEXTS)


@sqlite_only
def test_plain_and_quoted_batches_both_occur_and_agree(store: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite renders plain batches as they are and the others field by field: both ways."""
    monkeypatch.setattr(sqlite_export, "BATCH", 5)
    seen: list[bool] = []
    real = sqlite_export._plain

    def spy(rows: Any) -> str | None:
        got = real(rows)
        seen.append(got is not None)
        return got
    monkeypatch.setattr(sqlite_export, "_plain", spy)
    rnd = random.Random(3)
    fill_calls(store, rnd, 60)
    for _ in range(40):  # then plain calls only: whole batches pass the check
        store.db["calls"].insert({"contact_id": None, "campaign": "c1", "number": "+33123",
                                  "attempt": 1, "started_at": T0, "keys": ""})
    for call_id in range(-7, -2):  # the first batch (ids in order): "'-7", "'-6", …
        store.db["calls"].insert({"id": call_id, "contact_id": None, "campaign": "c1",
                                  "number": "+33123", "attempt": 1, "started_at": T0})
    assert rendered(store, None) == reference(store, None)
    assert True in seen and False in seen and reference(store, None)[0].count(b"\r\n'-") == 5


@sqlite_only
def test_values_sql_cannot_render_are_rendered_by_python(store: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's dynamic types, one call a batch: a REAL (1e+300 is 1.0e+300 in SQLite), a BLOB
    (b'...' in Python), a NUL in a list's name. A NUL elsewhere, where SQL renders every field
    (a batch with a quote: the bulk check cannot see a NUL printf cut off)."""
    monkeypatch.setattr(sqlite_export, "BATCH", 1)
    add_contact(store, "+33199000001", at=T0)
    call = {"contact_id": 1, "campaign": "c1", "number": "+33123", "started_at": T0}
    for attempt in (1.5, 1e300, 0.1 + 0.2, 1, 2):
        store.db["calls"].insert({**call, "attempt": attempt})
    store.db.execute("UPDATE calls SET stage = ? WHERE attempt = 1", (b"\x00bin",))
    store.db.execute("UPDATE calls SET channel_id = ? WHERE attempt = 2", (b"bin",))
    for column, value in [("stage", "a\x00b"), ("stage", "=a\x00,b"), ("caller_id", "=1\x00,"),
                          ("prompts_sha256", '{"a\x00": 1}'), ("number", "+33\x00")]:
        store.db["calls"].insert({**call, "attempt": 3, "keys": '"', column: value})
    listed = add_contact(store, "+33199000002", at=T0, source="list\x00=x")  # the console's form
    store.db["calls"].insert({**call, "contact_id": listed["id"], "attempt": 4})  # alone
    got, want = rendered(store, "c1"), reference(store, "c1")
    assert got == want and b",1e+300," in want[0] and b",0.30000000000000004," in want[0]
    assert b",b'bin'," in want[0] and want[0].count(b"\x00") == 6
