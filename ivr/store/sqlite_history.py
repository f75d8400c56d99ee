"""The SQLite backend's history: what the calling rules read of many numbers at once (the
opposition list, calls in flight, recent attempts and refusals, erasure holds, retry times)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ivr.store import erasure_holds
from ivr.store.base import History, parse_utc, utc
from ivr.store.erasure_holds import HOLDS_SQLITE
from ivr.store.sqlite_calls import OTHERS_OPEN_FOR
from ivr.store.sqlite_core import SQLiteCore

HISTORY_CHUNK = 5000  # numbers per history query: one JSON parameter, bounded statement size
HASH_CACHE_MAX = 200_000  # numbers whose opposition-list hash a generation keeps
HASH_CACHE_TURN_S = 60.0  # a cached hash not asked for within one to two of these is gone


def hashes_of(store: Any, numbers: list[str]) -> dict[str, str]:
    """{number_hash: number} for `numbers`, both backends. A re-plan reads every pending
    contact again, those in flight included: an HMAC per number was half its CPU. Kept per
    store instance (and per key: a new key starts afresh) in two generations that turn every
    HASH_CACHE_TURN_S: a number not asked for a whole generation is forgotten (an erased or
    finished number does not stay in a long-lived process's memory); at most HASH_CACHE_MAX."""
    key, now = getattr(store, "_key", None), time.monotonic()
    kept = store.__dict__.get("_hash_cache")
    if kept is None or kept[0] is not key:
        kept = store.__dict__["_hash_cache"] = [key, {}, {}, now]
    if now - kept[3] >= HASH_CACHE_TURN_S or len(kept[1]) > HASH_CACHE_MAX:
        kept[1:] = [{}, kept[1] if len(kept[1]) <= HASH_CACHE_MAX else {}, now]
    cache: dict[str, str] = kept[1]
    older: dict[str, str] = kept[2]
    out = {}
    for n in numbers:
        h = cache.get(n)
        if h is None:
            h = cache[n] = older.pop(n, None) or store.number_hash(n)
        out[h] = n
    return out



def chunked_history(fill: Callable[..., None], numbers: list[str], attempts_since: datetime,
                    refusals_since: datetime, campaign: str | None) -> dict[str, History]:
    """Both backends' `history`: their own `_fill_history` per HISTORY_CHUNK numbers."""
    out = {n: History() for n in numbers}
    for i in range(0, len(numbers), HISTORY_CHUNK):
        fill(out, numbers[i:i + HISTORY_CHUNK], attempts_since, refusals_since, campaign)
    return out


class HistorySQL(SQLiteCore):
    def history(self, numbers: list[str], attempts_since: datetime, refusals_since: datetime,
                campaign: str | None = None) -> dict[str, History]:
        """What the rules need for many numbers at once: six queries per HISTORY_CHUNK numbers
        instead of several per contact (one reads what an erasure kept: erasure_holds).
        `campaign` gives retry_at (of its last attempt). A number opposed or with a call in
        flight gets only that: the judge refuses it before it looks further (a re-plan with
        every call in flight reads two lists, not six; the claim reads its one number's whole
        history)."""
        return chunked_history(self._fill_history, numbers, attempts_since, refusals_since,
                               campaign)

    def held_among(self, numbers: list[str], now: datetime) -> set[str]:
        """The numbers an erasure left a hold for, not expired at `now` (erasure_holds): the
        plan's quiet shortcut must read their history (`history`) instead. No live hold at
        all (most stores): no number is hashed, the plan at scale pays one look-up."""
        if not self._rows("SELECT 1 AS x FROM erasure_holds WHERE kept_until > ? LIMIT 1",
                          (utc(now),)):
            return set()
        by_hash = hashes_of(self, numbers)
        return erasure_holds.live(by_hash, self._rows(HOLDS_SQLITE, (json.dumps(list(by_hash)),)),
                                  now)

    def _fill_history(self, out: dict[str, History], chunk: list[str], attempts_since: datetime,
                      refusals_since: datetime, campaign: str | None) -> None:
        conn, listed = self.db.conn, json.dumps(chunk)
        by_hash = hashes_of(self, chunk)
        for (h,) in conn.execute("SELECT number_hash FROM optouts WHERE number_hash IN "
                                 "(SELECT value FROM json_each(?))", (json.dumps(list(by_hash)),)):
            out[by_hash[h]].opted_out = True
        # The plan's now: attempts_since is now - CAP_PERIOD (erasure_holds.add_holds).
        fresh = utc(attempts_since + erasure_holds.CAP_PERIOD - OTHERS_OPEN_FOR)
        for (number,) in conn.execute(
                "SELECT DISTINCT number FROM calls WHERE outcome IS NULL AND number IN (SELECT "
                "value FROM json_each(?)) AND (? IS NULL OR +campaign = ? OR started_at > ?)",
                (listed, campaign, campaign, fresh)):
            out[number].in_flight = True
        rest = [n for n in chunk if not (out[n].opted_out or out[n].in_flight)]
        if not rest:
            return
        listed = json.dumps(rest)
        for number, started in conn.execute(
                "SELECT number, started_at FROM calls WHERE number IN (SELECT value FROM "
                "json_each(?)) AND started_at > ?", (listed, utc(attempts_since))):
            out[number].attempts.append(parse_utc(started))
        for number, at in conn.execute(
                "SELECT number, MAX(at) FROM consents WHERE number IN (SELECT value FROM "
                "json_each(?)) AND kind = 'refusal' AND at >= ? GROUP BY number",
                (listed, utc(refusals_since))):
            out[number].last_refusal = parse_utc(at)
        judged = set(rest)  # the holds of the numbers judged further, by their hash
        kept = {h: n for h, n in by_hash.items() if n in judged}
        erasure_holds.add_holds(out, kept, self._rows(HOLDS_SQLITE, (json.dumps(list(kept)),)),
                                attempts_since, refusals_since)
        if campaign is None:
            return
        # `+campaign`: by number (calls_number), not a walk of the campaign's every attempt
        # (calls_campaign), which made each claim slower as the campaign grew.
        for number, retry_at in conn.execute(
                "SELECT number, retry_at FROM calls WHERE retry_at IS NOT NULL AND id IN "
                "(SELECT MAX(id) FROM calls WHERE +campaign = ? AND number IN (SELECT value "
                "FROM json_each(?)) GROUP BY number)", (campaign, listed)):
            out[number].retry_at = parse_utc(retry_at)
