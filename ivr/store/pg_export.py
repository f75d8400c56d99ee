"""The PostgreSQL backend's CSV export of the calls (twin of sqlite_export.py): the server
renders each line and joins a batch of them; Python only moves the bytes.

The lines are byte for byte those of csv.writer (QUOTE_MINIMAL, "\\r\\n") over
report._safe_cell of str(value) (see sqlite_export.py). Here every field goes through the SQL
expressions: PostgreSQL's regular expressions and replace() run at C speed, and the columns are
typed (an integer's text is Python's str; text holds no NUL), so no value needs `render`.
COPY (SELECT ...) TO STDOUT (FORMAT csv) was measured too: it quotes an empty string (NULL's
twin: NULLIF(x, '') avoids it) and ends lines with LF alone, so each row is rewritten in Python:
1.40 s instead of 1.86 s for 300,000 calls, but 0.31 s of the console's CPU instead of 0.08 s.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

from ivr.store.base import Row
from ivr.store.kept_export import KeptExport
from ivr.store.pg_core import PgCore

FIRST_ID, LAST_ID = -(2 ** 63), 2 ** 63 - 1  # every BIGINT id between
BATCH = 5000  # calls per round trip: one chunk of ~0.5 MB
FIRST_BATCH = 1000  # the first chunk: ~110 KB, past the console pipe's 64 KB, sent at once

# One batch of at most BATCH calls from id `start` on: how many, the last id, their lines joined.
# Each field: as it is unless one regular expression finds a leading = + - @ tab CR or a , " CR
# LF inside (the usual case: one test per field); else quoted when it holds , " CR or LF ("
# doubled), else a leading ' before = + - @ tab (a phone column: unless a full E.164). An
# integer gets the ' when negative. format()'s %s (doubled for psycopg) prints NULL as nothing.
_BATCH = (
    "SELECT count(*) AS n, max(id) AS last, string_agg(line, '' ORDER BY id) AS lines FROM "
    "(SELECT c.id, "
    "format('%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s,%%s\r\n', CASE WHEN "
    "c.id < 0 THEN '''' || c.id ELSE c.id::text END, CASE WHEN c.contact_id < 0 THEN '''' || "
    "c.contact_id ELSE c.contact_id::text END, CASE WHEN c.number !~ '^[-=+@\t\r]|[,\"\r\n]' "
    "THEN c.number WHEN c.number ~ '[,\"\r\n]' THEN '\"' || CASE WHEN c.number ~ "
    "'^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.number, '\"', '\"\"') || '\"' WHEN "
    "c.number ~ '^[-=+@\t]' AND c.number !~ '^\\+[1-9][0-9]{2,14}$' THEN '''' || c.number "
    "ELSE c.number END, CASE WHEN s.source !~ '^[-=+@\t\r]|[,\"\r\n]' THEN s.source WHEN "
    "s.source ~ '[,\"\r\n]' THEN '\"' || CASE WHEN s.source ~ '^[-=+@\t\r]' THEN '''' ELSE '' "
    "END || replace(s.source, '\"', '\"\"') || '\"' WHEN s.source ~ '^[-=+@\t]' THEN '''' || "
    "s.source ELSE s.source END, CASE WHEN c.attempt < 0 THEN '''' || c.attempt ELSE "
    "c.attempt::text END, CASE WHEN c.campaign !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.campaign "
    "WHEN c.campaign ~ '[,\"\r\n]' THEN '\"' || CASE WHEN c.campaign ~ '^[-=+@\t\r]' THEN "
    "'''' ELSE '' END || replace(c.campaign, '\"', '\"\"') || '\"' WHEN c.campaign ~ "
    "'^[-=+@\t]' THEN '''' || c.campaign ELSE c.campaign END, CASE WHEN c.channel_id !~ "
    "'^[-=+@\t\r]|[,\"\r\n]' THEN c.channel_id WHEN c.channel_id ~ '[,\"\r\n]' THEN '\"' || "
    "CASE WHEN c.channel_id ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.channel_id, "
    "'\"', '\"\"') || '\"' WHEN c.channel_id ~ '^[-=+@\t]' THEN '''' || c.channel_id ELSE "
    "c.channel_id END, CASE WHEN c.started_at !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.started_at "
    "WHEN c.started_at ~ '[,\"\r\n]' THEN '\"' || CASE WHEN c.started_at ~ '^[-=+@\t\r]' THEN "
    "'''' ELSE '' END || replace(c.started_at, '\"', '\"\"') || '\"' WHEN c.started_at ~ "
    "'^[-=+@\t]' THEN '''' || c.started_at ELSE c.started_at END, CASE WHEN c.answered_at !~ "
    "'^[-=+@\t\r]|[,\"\r\n]' THEN c.answered_at WHEN c.answered_at ~ '[,\"\r\n]' THEN '\"' || "
    "CASE WHEN c.answered_at ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.answered_at, "
    "'\"', '\"\"') || '\"' WHEN c.answered_at ~ '^[-=+@\t]' THEN '''' || c.answered_at ELSE "
    "c.answered_at END, CASE WHEN c.ended_at !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.ended_at WHEN "
    "c.ended_at ~ '[,\"\r\n]' THEN '\"' || CASE WHEN c.ended_at ~ '^[-=+@\t\r]' THEN '''' "
    "ELSE '' END || replace(c.ended_at, '\"', '\"\"') || '\"' WHEN c.ended_at ~ '^[-=+@\t]' "
    "THEN '''' || c.ended_at ELSE c.ended_at END, CASE WHEN c.outcome !~ "
    "'^[-=+@\t\r]|[,\"\r\n]' THEN c.outcome WHEN c.outcome ~ '[,\"\r\n]' THEN '\"' || CASE "
    "WHEN c.outcome ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.outcome, '\"', '\"\"') "
    "|| '\"' WHEN c.outcome ~ '^[-=+@\t]' THEN '''' || c.outcome ELSE c.outcome END, CASE "
    "WHEN c.stage !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.stage WHEN c.stage ~ '[,\"\r\n]' THEN "
    "'\"' || CASE WHEN c.stage ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.stage, "
    "'\"', '\"\"') || '\"' WHEN c.stage ~ '^[-=+@\t]' THEN '''' || c.stage ELSE c.stage END, "
    "CASE WHEN c.keys !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.keys WHEN c.keys ~ '[,\"\r\n]' THEN "
    "'\"' || CASE WHEN c.keys ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.keys, '\"', "
    "'\"\"') || '\"' WHEN c.keys ~ '^[-=+@\t]' THEN '''' || c.keys ELSE c.keys END, CASE WHEN "
    "c.hangup_cause !~ '^[-=+@\t\r]|[,\"\r\n]' THEN c.hangup_cause WHEN c.hangup_cause ~ "
    "'[,\"\r\n]' THEN '\"' || CASE WHEN c.hangup_cause ~ '^[-=+@\t\r]' THEN '''' ELSE '' END "
    "|| replace(c.hangup_cause, '\"', '\"\"') || '\"' WHEN c.hangup_cause ~ '^[-=+@\t]' THEN "
    "'''' || c.hangup_cause ELSE c.hangup_cause END, CASE WHEN c.prompts_sha256 !~ "
    "'^[-=+@\t\r]|[,\"\r\n]' THEN c.prompts_sha256 WHEN c.prompts_sha256 ~ '[,\"\r\n]' THEN "
    "'\"' || CASE WHEN c.prompts_sha256 ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || "
    "replace(c.prompts_sha256, '\"', '\"\"') || '\"' WHEN c.prompts_sha256 ~ '^[-=+@\t]' THEN "
    "'''' || c.prompts_sha256 ELSE c.prompts_sha256 END, CASE WHEN c.caller_id !~ "
    "'^[-=+@\t\r]|[,\"\r\n]' THEN c.caller_id WHEN c.caller_id ~ '[,\"\r\n]' THEN '\"' || "
    "CASE WHEN c.caller_id ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || replace(c.caller_id, "
    "'\"', '\"\"') || '\"' WHEN c.caller_id ~ '^[-=+@\t]' AND c.caller_id !~ "
    "'^\\+[1-9][0-9]{2,14}$' THEN '''' || c.caller_id ELSE c.caller_id END) AS line FROM "
    "calls c LEFT JOIN contacts k ON k.id = c.contact_id LEFT JOIN campaign_contacts b ON "
    "b.contact_id = k.id AND b.campaign = c.campaign CROSS JOIN LATERAL (SELECT "
    "COALESCE(b.source, k.source) AS source) s WHERE (%(campaign)s::text IS NULL OR "
    "c.campaign = %(campaign)s) AND c.id >= %(start)s AND c.id <= %(hi)s ORDER BY c.id "
    "LIMIT %(limit)s) t")


# report.csv's block versions (schema 11): a block's version is the sum of its slots' (and,
# for every campaign, of its campaigns').
_VERSIONS = (
    "SELECT block, SUM(version) AS version FROM call_chunks WHERE (%(campaign)s::text IS NULL "
    "OR campaign = %(campaign)s) GROUP BY block ORDER BY block")


class PgExportSQL(KeptExport, PgCore):
    def export_calls_csv(self, campaign: str | None,
                         render: Callable[[Row], str]) -> Generator[bytes, None, int]:
        """The CSV lines of every call (no header), in id order, in chunks of BATCH calls
        (FIRST_BATCH first); returns how many. `render` is not needed here (see the module)."""
        count = 0
        for data, n in self._render_range(campaign, FIRST_ID, LAST_ID, render, FIRST_BATCH):
            count += n
            yield data
        return count

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """No transaction: the versions are read first, then each batch is its own statement.
        One held for the whole download would last as long as the client takes to read it
        (the producer waits on the console's pipe), and its locks would stall the VACUUM FULL
        after an erasure, and every write queued behind that. A block changed after its
        version was read is kept under the older version: the next download renders it."""
        yield

    def _chunk_versions(self, campaign: str | None) -> list[tuple[int, int]]:
        return [(int(r["block"]), int(r["version"]))
                for r in self._rows(_VERSIONS, {"campaign": campaign})]

    def _render_range(self, campaign: str | None, lo: int, hi: int,
                      render: Callable[[Row], str], first: int
                      ) -> Iterator[tuple[bytes, int]]:
        """The lines of the calls with ids in [lo, hi], in batches of BATCH calls (`first`
        at most for the first): (UTF-8 bytes, calls)."""
        start, size = lo, min(first, BATCH)
        while True:
            row = self._row(_BATCH, {"campaign": campaign, "start": start, "hi": hi,
                                     "limit": size}) or {}
            n = int(row.get("n") or 0)
            if n:
                yield str(row["lines"]).encode("utf-8"), n
            if n < size:
                return
            start, size = int(row["last"]) + 1, BATCH
