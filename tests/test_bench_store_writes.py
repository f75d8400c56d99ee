"""bench/bench_store_writes.py still measures what it says: each of a call's writes, on the
calls it says, and the writes land (not a timing: the figures are the README's)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_store_writes  # noqa: E402  (bench/ is not a package)

from ivr.store.sqlite import Store  # noqa: E402


def test_the_bench_times_every_write_of_every_call(
        tmp_path: Path, opened_stores: list[Store]) -> None:
    got = bench_store_writes.measure(10, "sqlite", tmp_path)
    assert [got[k]["n"] for k in ("claim_attempt", "record_choice", "finish_answered",
                                  "finish_unanswered")] == [10, 5, 5, 5]
    assert all(got[k]["client_us"] > 0 and "server_us" not in got[k]
               for k in ("claim_attempt", "finish_unanswered"))
    outcomes = {r["outcome"]: r["n"] for r in opened_stores[0].q(
        "SELECT outcome, COUNT(*) AS n FROM calls GROUP BY 1")}
    assert outcomes == {"message_played": 5, "no_answer": 5}
    assert opened_stores[0].q(
        "SELECT COUNT(*) AS n FROM consents WHERE kind = 'consent'") == [{"n": 5}]
