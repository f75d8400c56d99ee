"""The SQLite backend's CSV export of the calls (`ivr report --format csv`, the console's
report.csv): SQL renders each line, Python checks them in bulk and moves bytes.

The lines must be byte for byte those of the reference, csv.writer (QUOTE_MINIMAL, "\\r\\n")
over report._safe_cell of str(value): a field holding , " CR or LF is quoted (" doubled); one
starting with = + - @ tab or CR gets a leading ' unless it is a phone column holding a full
E.164 (\\+[1-9][0-9]{2,14}); NULL is empty. Checking every field in SQL costs as much as the
Python path (SQLite scans a string a character at a time), so _FAST renders as they are the
fields that are plain in practice and Python checks those in bulk (str.count over a batch, at
memory speed); the fields that are not (the phone columns, the prompts' JSON) are rendered by
SQL expressions. A batch that fails the check is rendered again by _CAREFUL, every field through
those expressions; a value SQL cannot render as Python's str (a REAL or BLOB) is rendered by the
caller's `render` from the raw row, and so is a NUL character in a batch _CAREFUL renders. A
NUL inside a field printf prints is cut there unseen (finding one would cost a scan of every
field), but in the list's name (typed in the console's upload form): no other writer of this
program stores one (the values come from the program, the dialplan, Asterisk, the config).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter

from ivr.store.base import Row
from ivr.store.kept_export import KeptExport
from ivr.store.sqlite_core import SQLiteCore

BATCH = 5000  # calls per fetch: one chunk of ~0.5 MB
FIRST_BATCH = 1000  # the first chunk: ~110 KB, past the console pipe's 64 KB, sent at once
_HEAD = itemgetter(0)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_NOT_PLAIN = ('"', "\r", "\n", "\x00")  # in a plain head
# A field of a head starting with a formula character (",=", ",+", ",-", ",@", ",\t"): one
# pass of a regular expression, 0.46 ms over a batch's heads against 2.7 ms for the five
# two-character searches (each stops at every comma: 14 a line).
_FORMULA_FIELD = re.compile(",[-=+@\t]")
MARK = "\x01"  # before the number's field in a head

# Per call: head "id,contact_id,\x01number,source,attempt,…,hangup_cause," and tail "prompts,
# caller_id CRLF". The number, prompts and caller id fields go through the expressions (quoted
# when they hold , " CR or LF; else a leading ' before = + - @ tab, unless a phone column holds
# a full E.164); the others are printed as they are, for _plain to check. \x01 marks the number
# field (its '+' is no formula), removed once each head is known to hold exactly one. The head
# is NULL when a value is a BLOB (Python writes b'...'), contact_id or attempt a REAL (SQLite
# writes 1e+300 as 1.0e+300, Python 1e+300), or the list's name holds a NUL. %z is SQLite
# printf's %s (the security check keeps the spelling %s for Python templates).
_FAST = (
    "SELECT iif('blob' IN (typeof(c.contact_id), typeof(c.number), "
    "typeof(ifnull(b.source, k.source)), "
    "typeof(c.attempt), typeof(c.campaign), typeof(c.channel_id), typeof(c.started_at), "
    "typeof(c.answered_at), typeof(c.ended_at), typeof(c.outcome), typeof(c.stage), "
    "typeof(c.keys), typeof(c.hangup_cause), typeof(c.prompts_sha256), typeof(c.caller_id)) "
    "OR 'real' IN (typeof(c.contact_id), typeof(c.attempt)) OR "
    "instr(ifnull(b.source, k.source), char(0)), "
    "NULL, printf('%z,%z,\x01%z,%z,%z,%z,%z,%z,%z,%z,%z,%z,%z,%z,', c.id, c.contact_id, CASE "
    "WHEN c.number GLOB '*[,\"\r\n]*' THEN '\"' || iif(c.number GLOB '[-=+@\t\r]*', '''', '') "
    "|| replace(c.number, '\"', '\"\"') || '\"' WHEN c.number GLOB '[-=+@\t]*' AND NOT "
    "(c.number GLOB '+[1-9][0-9][0-9]*' AND length(c.number) <= 16 AND substr(c.number, 2) "
    "NOT GLOB '*[^0-9]*') THEN '''' || c.number ELSE ifnull(c.number, '') END, "
    "ifnull(b.source, k.source), "
    "c.attempt, c.campaign, c.channel_id, c.started_at, c.answered_at, c.ended_at, c.outcome, "
    "c.stage, c.keys, c.hangup_cause)), CASE WHEN c.prompts_sha256 GLOB '*[,\"\r\n]*' THEN "
    "'\"' || iif(c.prompts_sha256 GLOB '[-=+@\t\r]*', '''', '') || replace(c.prompts_sha256, "
    "'\"', '\"\"') || '\"' WHEN c.prompts_sha256 GLOB '[-=+@\t]*' THEN '''' || "
    "c.prompts_sha256 ELSE ifnull(c.prompts_sha256, '') END || ',' || CASE WHEN c.caller_id "
    "GLOB '*[,\"\r\n]*' THEN '\"' || iif(c.caller_id GLOB '[-=+@\t\r]*', '''', '') || "
    "replace(c.caller_id, '\"', '\"\"') || '\"' WHEN c.caller_id GLOB '[-=+@\t]*' AND NOT "
    "(c.caller_id GLOB '+[1-9][0-9][0-9]*' AND length(c.caller_id) <= 16 AND "
    "substr(c.caller_id, 2) NOT GLOB '*[^0-9]*') THEN '''' || c.caller_id ELSE "
    "ifnull(c.caller_id, '') END || char(13, 10) FROM calls c LEFT JOIN contacts k ON k.id = "
    "c.contact_id LEFT JOIN campaign_contacts b ON b.contact_id = k.id AND b.campaign = "
    "c.campaign WHERE (:campaign IS NULL OR c.campaign = :campaign) AND c.id BETWEEN :lo AND "
    ":hi ORDER BY c.id")

# Per call: its id and its whole line, every field through the expressions; NULL for a REAL
# or a BLOB (Python renders it).
_CAREFUL = (
    "SELECT id, iif(min(typeof(id), typeof(contact_id), typeof(number), typeof(source), "
    "typeof(attempt), typeof(campaign), typeof(channel_id), typeof(started_at), "
    "typeof(answered_at), typeof(ended_at), typeof(outcome), typeof(stage), typeof(keys), "
    "typeof(hangup_cause), typeof(prompts_sha256), typeof(caller_id)) = 'blob' OR 'real' IN "
    "(typeof(contact_id), typeof(attempt)), NULL, CASE WHEN id GLOB '*[,\"\r\n]*' THEN '\"' "
    "|| iif(id GLOB '[-=+@\t\r]*', '''', '') || replace(id, '\"', '\"\"') || '\"' WHEN id "
    "GLOB '[-=+@\t]*' THEN '''' || id ELSE ifnull(id, '') END || ',' || CASE WHEN contact_id "
    "GLOB '*[,\"\r\n]*' THEN '\"' || iif(contact_id GLOB '[-=+@\t\r]*', '''', '') || "
    "replace(contact_id, '\"', '\"\"') || '\"' WHEN contact_id GLOB '[-=+@\t]*' THEN '''' || "
    "contact_id ELSE ifnull(contact_id, '') END || ',' || CASE WHEN number GLOB '*[,\"\r\n]*' "
    "THEN '\"' || iif(number GLOB '[-=+@\t\r]*', '''', '') || replace(number, '\"', '\"\"') "
    "|| '\"' WHEN number GLOB '[-=+@\t]*' AND NOT (number GLOB '+[1-9][0-9][0-9]*' AND "
    "length(number) <= 16 AND substr(number, 2) NOT GLOB '*[^0-9]*') THEN '''' || number ELSE "
    "ifnull(number, '') END || ',' || CASE WHEN source GLOB '*[,\"\r\n]*' THEN '\"' || "
    "iif(source GLOB '[-=+@\t\r]*', '''', '') || replace(source, '\"', '\"\"') || '\"' WHEN "
    "source GLOB '[-=+@\t]*' THEN '''' || source ELSE ifnull(source, '') END || ',' || CASE "
    "WHEN attempt GLOB '*[,\"\r\n]*' THEN '\"' || iif(attempt GLOB '[-=+@\t\r]*', '''', '') "
    "|| replace(attempt, '\"', '\"\"') || '\"' WHEN attempt GLOB '[-=+@\t]*' THEN '''' || "
    "attempt ELSE ifnull(attempt, '') END || ',' || CASE WHEN campaign GLOB '*[,\"\r\n]*' "
    "THEN '\"' || iif(campaign GLOB '[-=+@\t\r]*', '''', '') || replace(campaign, '\"', "
    "'\"\"') || '\"' WHEN campaign GLOB '[-=+@\t]*' THEN '''' || campaign ELSE "
    "ifnull(campaign, '') END || ',' || CASE WHEN channel_id GLOB '*[,\"\r\n]*' THEN '\"' || "
    "iif(channel_id GLOB '[-=+@\t\r]*', '''', '') || replace(channel_id, '\"', '\"\"') || "
    "'\"' WHEN channel_id GLOB '[-=+@\t]*' THEN '''' || channel_id ELSE ifnull(channel_id, "
    "'') END || ',' || CASE WHEN started_at GLOB '*[,\"\r\n]*' THEN '\"' || iif(started_at "
    "GLOB '[-=+@\t\r]*', '''', '') || replace(started_at, '\"', '\"\"') || '\"' WHEN "
    "started_at GLOB '[-=+@\t]*' THEN '''' || started_at ELSE ifnull(started_at, '') END || "
    "',' || CASE WHEN answered_at GLOB '*[,\"\r\n]*' THEN '\"' || iif(answered_at GLOB "
    "'[-=+@\t\r]*', '''', '') || replace(answered_at, '\"', '\"\"') || '\"' WHEN answered_at "
    "GLOB '[-=+@\t]*' THEN '''' || answered_at ELSE ifnull(answered_at, '') END || ',' || "
    "CASE WHEN ended_at GLOB '*[,\"\r\n]*' THEN '\"' || iif(ended_at GLOB '[-=+@\t\r]*', "
    "'''', '') || replace(ended_at, '\"', '\"\"') || '\"' WHEN ended_at GLOB '[-=+@\t]*' THEN "
    "'''' || ended_at ELSE ifnull(ended_at, '') END || ',' || CASE WHEN outcome GLOB "
    "'*[,\"\r\n]*' THEN '\"' || iif(outcome GLOB '[-=+@\t\r]*', '''', '') || replace(outcome, "
    "'\"', '\"\"') || '\"' WHEN outcome GLOB '[-=+@\t]*' THEN '''' || outcome ELSE "
    "ifnull(outcome, '') END || ',' || CASE WHEN stage GLOB '*[,\"\r\n]*' THEN '\"' || "
    "iif(stage GLOB '[-=+@\t\r]*', '''', '') || replace(stage, '\"', '\"\"') || '\"' WHEN "
    "stage GLOB '[-=+@\t]*' THEN '''' || stage ELSE ifnull(stage, '') END || ',' || CASE WHEN "
    "keys GLOB '*[,\"\r\n]*' THEN '\"' || iif(keys GLOB '[-=+@\t\r]*', '''', '') || "
    "replace(keys, '\"', '\"\"') || '\"' WHEN keys GLOB '[-=+@\t]*' THEN '''' || keys ELSE "
    "ifnull(keys, '') END || ',' || CASE WHEN hangup_cause GLOB '*[,\"\r\n]*' THEN '\"' || "
    "iif(hangup_cause GLOB '[-=+@\t\r]*', '''', '') || replace(hangup_cause, '\"', '\"\"') || "
    "'\"' WHEN hangup_cause GLOB '[-=+@\t]*' THEN '''' || hangup_cause ELSE "
    "ifnull(hangup_cause, '') END || ',' || CASE WHEN prompts_sha256 GLOB '*[,\"\r\n]*' THEN "
    "'\"' || iif(prompts_sha256 GLOB '[-=+@\t\r]*', '''', '') || replace(prompts_sha256, "
    "'\"', '\"\"') || '\"' WHEN prompts_sha256 GLOB '[-=+@\t]*' THEN '''' || prompts_sha256 "
    "ELSE ifnull(prompts_sha256, '') END || ',' || CASE WHEN caller_id GLOB '*[,\"\r\n]*' "
    "THEN '\"' || iif(caller_id GLOB '[-=+@\t\r]*', '''', '') || replace(caller_id, '\"', "
    "'\"\"') || '\"' WHEN caller_id GLOB '[-=+@\t]*' AND NOT (caller_id GLOB "
    "'+[1-9][0-9][0-9]*' AND length(caller_id) <= 16 AND substr(caller_id, 2) NOT GLOB "
    "'*[^0-9]*') THEN '''' || caller_id ELSE ifnull(caller_id, '') END || char(13, 10)) FROM "
    "(SELECT c.id AS id, c.contact_id AS contact_id, c.number AS number, "
    "ifnull(b.source, k.source) AS source, "
    "c.attempt AS attempt, c.campaign AS campaign, c.channel_id AS channel_id, c.started_at "
    "AS started_at, c.answered_at AS answered_at, c.ended_at AS ended_at, c.outcome AS "
    "outcome, c.stage AS stage, c.keys AS keys, c.hangup_cause AS hangup_cause, "
    "c.prompts_sha256 AS prompts_sha256, c.caller_id AS caller_id FROM calls c LEFT JOIN "
    "contacts k ON k.id = c.contact_id LEFT JOIN campaign_contacts b ON b.contact_id = k.id "
    "AND b.campaign = c.campaign WHERE (:campaign IS NULL OR c.campaign = :campaign) "
    "AND (:after IS NULL OR c.id > :after) AND c.id BETWEEN :lo AND :hi ORDER BY c.id "
    "LIMIT :limit)")

# One call's values as export_calls gives them (for `render`).
_ROW = (
    "SELECT c.id, c.contact_id, c.number, ifnull(b.source, k.source) AS source, c.attempt, "
    "c.campaign, "
    "c.channel_id, "
    "c.started_at, c.answered_at, c.ended_at, c.outcome, c.stage, c.keys, c.hangup_cause, "
    "c.prompts_sha256, c.caller_id FROM calls c LEFT JOIN contacts k ON k.id = c.contact_id "
    "LEFT JOIN campaign_contacts b ON b.contact_id = k.id AND b.campaign = c.campaign "
    "WHERE c.id = ?")


def _plain(rows: list[tuple[str, str]]) -> str | None:
    """The batch's lines if no field printed as it is needs quotes or a '; None if one does
    (or holds a value SQL could not render)."""
    try:
        heads = "".join(map(_HEAD, rows))
        text = "".join(chain.from_iterable(rows))
    except TypeError:  # a NULL head (a REAL or a BLOB)
        return None
    # Exactly 14 commas per head: none inside a field, so every field but the first starts
    # after a comma (the number after ",\x01"), and ",=" finds a formula at the start of any.
    # One \x01 per call in all the text: each is a mark, none a value's.
    n = len(rows)
    if heads.count(",") != 14 * n or text.count(MARK) != n or heads.startswith(_FORMULA) \
            or "\x00" in text or any(bad in heads for bad in _NOT_PLAIN) \
            or _FORMULA_FIELD.search(heads):
        return None
    return text.replace(MARK, "")


# report.csv's block versions (schema 11): a block's version summed over its campaigns.
_VERSIONS = (
    "SELECT block, SUM(version) AS version FROM call_chunks WHERE (:campaign IS NULL OR "
    "campaign = :campaign) GROUP BY block ORDER BY block")
ALL_IDS = (-(2 ** 63), 2 ** 63 - 1)


class ExportSQL(KeptExport, SQLiteCore):
    def export_calls_csv(self, campaign: str | None,
                         render: Callable[[Row], str]) -> Generator[bytes, None, int]:
        """The CSV lines of every call (no header), in id order, in chunks of BATCH calls
        (FIRST_BATCH first); returns how many. `render`: the reference line of a raw row (see
        the module)."""
        count = 0
        for data, n in self._render_range(campaign, *ALL_IDS, render, FIRST_BATCH):
            count += n
            yield data
        return count

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """One read transaction (WAL: the versions and every line from one snapshot); inside
        the caller's own transaction, that one."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _chunk_versions(self, campaign: str | None) -> list[tuple[int, int]]:
        return [(int(b), int(v)) for b, v in
                self.db.conn.execute(_VERSIONS, {"campaign": campaign}).fetchall()]

    def _render_range(self, campaign: str | None, lo: int, hi: int,
                      render: Callable[[Row], str], first: int
                      ) -> Iterator[tuple[bytes, int]]:
        """The lines of the calls with ids in [lo, hi], in batches of BATCH calls (`first`
        at most for the first): (UTF-8 bytes, calls)."""
        cur = self.db.conn.execute(_FAST, {"campaign": campaign, "lo": lo, "hi": hi})
        after: int | None = None  # the last call sent: _CAREFUL starts after it
        size = min(first, BATCH)
        try:
            while rows := cur.fetchmany(size):
                size = BATCH
                text = _plain(rows)
                if text is None:
                    text, after = self._careful(campaign, after, (lo, hi), len(rows), render)
                else:
                    after = int(rows[-1][0].split(",", 1)[0])
                yield text.encode("utf-8"), len(rows)
        finally:
            cur.close()

    def _careful(self, campaign: str | None, after: int | None, ids: tuple[int, int],
                 limit: int, render: Callable[[Row], str]) -> tuple[str, int | None]:
        """The same calls as the batch (the same read transaction: the statement above is
        still open on this connection), every field through SQL's expressions."""
        lines: list[str] = []
        for call_id, line in self.db.conn.execute(
                _CAREFUL, {"campaign": campaign, "after": after, "lo": ids[0], "hi": ids[1],
                           "limit": limit}):
            if line is None or "\x00" in line:  # SQLite's string functions stop at a NUL
                line = render(self._row(_ROW, (call_id,)) or {})
            lines.append(line)
            after = call_id
        return "".join(lines), after
