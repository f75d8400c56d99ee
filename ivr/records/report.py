"""The campaign report: counts and rates as a dict (JSON), one CSV row per call, rich tables.

Definitions (the dict is the contract; render() only displays it):
- attempts: every calls row, in flight included; in_flight: rows without an outcome yet.
- outcomes, per_attempt, per_source[...]["outcomes"]: calls that have an outcome.
- answered: calls whose outcome says the line was picked up, answering machines included.
- human_answered: answered minus `machine`. A machine cannot consent, so counting it would
  dilute the consent rate with lines nobody heard; no_input and hangup_intro stay human
  answers (a person picked up, or we cannot tell otherwise).
- consent_rate: (message_played + message_partial) / human_answered, None if no human answered.
  A callee who said yes and then opted out during the message counts as opted_out, not consent.
- completion_rate: message_played / (message_played + message_partial), None if no consent.
- contacts, per_source[...]["contacts"/"statuses"]: the campaign's contacts (their lists and
  progress in that campaign), or every contact of the store when `campaign` is None (`--all`).
  optouts: the whole opposition list (common to every campaign).
- per_attempt keys are attempt numbers (ints; JSON turns them into strings).
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any, BinaryIO, TextIO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ivr.callflow import outcomes as outcome_table
from ivr.store.base import Chunk, Row, StoreBackend, status_totals

HUMAN_ANSWERED = outcome_table.HUMAN_ANSWERED
CONSENTED = outcome_table.CONSENTED
NO_CONTACT = "(no contact)"  # calls whose contact row is missing
CSV_COLUMNS = ("id", "contact_id", "number", "source", "attempt", "campaign", "channel_id",
               "started_at", "answered_at", "ended_at", "outcome", "stage", "keys",
               "hangup_cause", "prompts_sha256", "caller_id")
PHONE_COLUMNS = frozenset({"number", "caller_id"})
E164 = re.compile(r"\+[1-9][0-9]{2,14}")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
OUTCOME_ORDER = outcome_table.ORDER
_ordered = outcome_table.ordered  # known outcomes in table order, then anything unexpected


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _per_source(contacts: list[Row], calls: list[Row]) -> dict[str, dict[str, Any]]:
    """Contacts and statuses of every source (contacts_per_source), outcomes of the calls
    (outcomes_per_source)."""
    per_source: dict[str, dict[str, Any]] = {}

    def entry(source: str) -> dict[str, Any]:
        return per_source.setdefault(source, {"contacts": 0, "outcomes": {}, "statuses": {}})
    for r in contacts:
        entry(r["source"])["contacts"] += r["n"]
        entry(r["source"])["statuses"][r["status"]] = r["n"]
    for r in calls:
        entry(r["source"] if r["source"] is not None else NO_CONTACT)["outcomes"][
            r["outcome"]] = r["n"]
    for e in per_source.values():
        e["outcomes"] = _ordered(e["outcomes"])
    return per_source


def summary(store: StoreBackend, campaign: str | None = None) -> dict[str, Any]:
    """The report's dict. Each store read once: the outcomes are the per-attempt counts summed
    and the contacts' statuses the per-source ones (the store keeps the call counts up to date
    as it writes, so the report after each commit of a run stays cheap)."""
    per_attempt = store.outcomes_per_attempt(campaign)
    attempts, in_flight = store.call_totals(campaign)
    by_source = store.contacts_per_source(campaign)
    counts: dict[str, int] = {}
    for per_outcome in per_attempt.values():
        for o, n in per_outcome.items():
            counts[o] = counts.get(o, 0) + n
    outcomes = _ordered(counts)
    answered = sum(n for o, n in outcomes.items() if o in outcome_table.ANSWERED)
    human = sum(n for o, n in outcomes.items() if o in HUMAN_ANSWERED)
    said_yes = sum(outcomes.get(o, 0) for o in CONSENTED)
    by_status = status_totals(by_source)
    statuses = {s: 0 for s in outcome_table.CONTACT_STATUSES}
    for status in sorted(by_status):  # an unexpected status after the known ones
        statuses[status] = by_status[status]
    return {
        "campaign": campaign,
        "attempts": attempts,
        "in_flight": in_flight,
        "outcomes": outcomes,
        "answered": answered,
        "human_answered": human,
        "consents": said_yes,
        "consent_rate": _rate(said_yes, human),
        "completion_rate": _rate(outcomes.get("message_played", 0), said_yes),
        "per_attempt": {a: _ordered(per_outcome) for a, per_outcome in per_attempt.items()},
        "per_source": _per_source(by_source, store.outcomes_per_source(campaign)),
        "contacts": statuses,
        "optouts": store.optout_count(),
    }


def _safe_cell(column: str, value: Any) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading = + - @ tab or CR gets a quote.

    A phone column holding a plain E.164 number ('+' then digits) is kept intact: digits cannot
    run anything, and callers need the exact number. A spreadsheet may still display it as a
    number without its '+': import the column as text.
    """
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) and not (column in PHONE_COLUMNS and E164.fullmatch(text)):
        return "'" + text
    return text


def _line(row: dict[str, Any]) -> str:
    """One call's CSV line: csv.writer over _safe_cell of each column. The reference the store
    renders in SQL (ivr/store/sqlite_export.py, pg_export.py); it calls this for the rare value
    SQL cannot render as Python's str (a REAL, a BLOB, a NUL)."""
    out = io.StringIO()
    csv.writer(out).writerow([_safe_cell(col, row[col]) for col in CSV_COLUMNS])
    return out.getvalue()


CSV_HEADER = ",".join(CSV_COLUMNS) + "\r\n"  # csv.writer's line: no name needs quoting
# One bytes object, always the same: the console's gzip download sends its kept segment.
CSV_HEADER_BYTES = CSV_HEADER.encode("utf-8")


def calls_csv_chunks(store: StoreBackend, campaign: str | None = None
                     ) -> Generator[bytes, None, int]:
    """The CSV's bytes (UTF-8), header first, in the store's chunks; returns the row count.
    The store renders the lines (Python only moves bytes: 300,000 calls in a fraction of the
    time csv.writer takes)."""
    yield CSV_HEADER.encode("utf-8")
    return (yield from store.export_calls_csv(campaign, _line))


def calls_csv(store: StoreBackend, out: TextIO | BinaryIO, campaign: str | None = None) -> int:
    """One row per call (header first), streamed from the store; returns the row count. A text
    file (io.TextIOBase: stdout, StringIO) gets text; any other writer (the console's pipe)
    the bytes as they are."""
    text = isinstance(out, io.TextIOBase)
    chunks = calls_csv_chunks(store, campaign)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration as done:
            return int(done.value)
        out.write(chunk.decode("utf-8") if text else chunk)  # type: ignore[arg-type]


def calls_csv_kept(store: StoreBackend, out: BinaryIO, campaign: str | None,
                   kept: Mapping[int, Chunk], fresh: dict[int, Chunk] | None,
                   fresh_max: int | None = None) -> int:
    """calls_csv's bytes to a binary writer, block by block (the console's kept copy): the
    blocks of `kept` the store finds unchanged are written as they are, the others rendered;
    `fresh` (unless None) receives every block, to keep for the next download, and is left
    empty once they pass `fresh_max` bytes."""
    out.write(CSV_HEADER_BYTES)
    chunks = store.export_calls_csv_kept(campaign, _line, kept, fresh, fresh_max)
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration as done:
                return int(done.value)
            out.write(chunk)
    finally:
        # At once, whatever stopped the writes (a client gone or stalled): its read snapshot
        # is released now, not when a traceback that holds this frame is let go.
        chunks.close()


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "—"


def _rate_text(rate: float | None, num: int, den: int, what: str) -> str:
    if rate is None:
        return f"— (no {what} yet)"
    return f"{100 * rate:.1f} % ({num} of {den} {what})"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "—"


def render(data: dict[str, Any]) -> Group:
    """Readable tables of a summary() dict."""
    title = f"campaign {data['campaign']}" if data.get("campaign") else "all campaigns"
    head = Text(f"{title}: {data['attempts']} attempt(s), {data['in_flight']} in flight, "
                f"{data['answered']} answered ({data['human_answered']} by a person)")
    parts: list[RenderableType] = [head, _outcomes_table(data), _rates_table(data),
                                   _attempts_table(data), _sources_table(data),
                                   _contacts_table(data)]
    parts.append(Text(f"opposition list: {data['optouts']} number(s), never called"))
    return Group(*parts)


def _share_table(title: str, label: str, unit: str, counts: dict[str, int],
                 name: Callable[[str], str] = str) -> Table:
    """One row per key: its count and its share of the total."""
    table = Table(title=title)
    table.add_column(label)
    table.add_column(unit, justify="right")
    table.add_column("%", justify="right")
    total = sum(counts.values())
    for key, n in counts.items():
        table.add_row(Text(name(key)), str(n), _pct(n, total))  # Text: no markup read
    return table


def _outcomes_table(data: dict[str, Any]) -> Table:
    outcomes = _share_table("Outcomes", "Outcome", "Calls", data["outcomes"],
                            lambda o: o if o in outcome_table.OUTCOMES else f"{o} (unknown)")
    if not data["outcomes"]:
        outcomes.add_row("no call has ended yet", "0", "—")
    return outcomes


def _rates_table(data: dict[str, Any]) -> Table:
    played = data["outcomes"].get("message_played", 0)
    rates = Table(title="Rates", show_header=False)
    rates.add_column("Rate")
    rates.add_column("Value")
    rates.add_row("consent (said yes / answered by a person)",
                  _rate_text(data["consent_rate"], data["consents"], data["human_answered"],
                             "human answers"))
    rates.add_row("completion (message heard to the end / said yes)",
                  _rate_text(data["completion_rate"], played, data["consents"], "consents"))
    return rates


def _attempts_table(data: dict[str, Any]) -> Table:
    attempts = Table(title="Per attempt")
    attempts.add_column("Attempt", justify="right")
    attempts.add_column("Calls", justify="right")
    attempts.add_column("Outcomes")
    for attempt, counts in data["per_attempt"].items():
        attempts.add_row(str(attempt), str(sum(counts.values())), _counts_text(counts))
    return attempts


def _sources_table(data: dict[str, Any]) -> Table:
    sources = Table(title="Per source")
    for name, justify in (("Source", "left"), ("Contacts", "right"), ("Statuses", "left"),
                          ("Calls", "right"), ("Outcomes", "left")):
        sources.add_column(name, justify=justify)  # type: ignore[arg-type]
    for source, entry in data["per_source"].items():
        # Text: a list's name is free text, "[brouillon]" or "[/2026]" no rich markup
        sources.add_row(Text(source), str(entry["contacts"]), _counts_text(entry["statuses"]),
                        str(sum(entry["outcomes"].values())), _counts_text(entry["outcomes"]))
    return sources


def _contacts_table(data: dict[str, Any]) -> Table:
    return _share_table("Contacts", "Status", "Contacts", data["contacts"])
