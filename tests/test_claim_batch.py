"""The run claims a burst of due contacts in one transaction (Sender.batch, Dialer.place_many):
a local store, pacing fast enough that CLAIM_BATCH intervals fit in BATCH_SPREAD_S. The caps,
the window and one attempt per number hold; a claim that fails rolls the whole batch back and
leaves no flight behind."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ivr.campaign import dialer as dialer_mod
from ivr.telephony.fake_pbx import answer

from test_dialer import fiction, rig
from test_run_loop import run_campaign


def claim_transactions(store: Any) -> list[int]:
    """Per store transaction that claimed attempts, how many it claimed: the connection's
    trace counts the BEGINs, each claim notes the one it ran in."""
    begins, claims = [0], Counter()
    real = store.claim_attempt

    def trace(sql: str) -> None:
        if sql.lstrip().upper().startswith("BEGIN"):
            begins[0] += 1

    def claim_attempt(*args: Any, **kw: Any) -> Any:
        got = real(*args, **kw)
        if got.call is not None:
            claims[begins[0]] += 1
        return got
    store.db.conn.set_trace_callback(trace)
    store.claim_attempt = claim_attempt
    return claims  # type: ignore[return-value]


def test_a_burst_of_claims_shares_its_commits_within_the_caps(tmp_path: Path) -> None:
    numbers = [fiction(i) for i in range(60)]

    async def scenario() -> tuple[list[int], int, Any, list[dict[str, Any]]]:
        async with rig(tmp_path, {n: answer(["1"], prompt_s=0.2) for n in numbers},
                       max_concurrent=40, calls_per_second=200) as r:
            per_commit = claim_transactions(r.store)
            report, _, _ = await run_campaign(r)
            r.store.db.conn.set_trace_callback(None)
            return list(per_commit.values()), r.pbx.max_live, report, r.calls()
    per_commit, max_live, report, calls = asyncio.run(scenario())
    assert sum(per_commit) == 60 and max(per_commit) > 1  # shared commits
    assert len(per_commit) < 30, per_commit  # instead of one per claim
    assert max(per_commit) <= 10  # 200 calls/s: the last leaves within 50 ms of its claim
    assert max_live <= 40 and report.originated == 60
    assert Counter(c["number"] for c in calls) == Counter(numbers)  # one attempt each
    assert {c["outcome"] for c in calls} == {"message_played"}


def test_slow_pacing_claims_one_call_per_commit(tmp_path: Path) -> None:
    """At 20 calls/s, the second of a batch would leave 50 ms after its claim: claims are not
    batched (a claim's rules are judged at its claim; its Originate leaves right after)."""
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> list[int]:
        async with rig(tmp_path, {n: answer(["1"], prompt_s=0.05) for n in numbers},
                       max_concurrent=6, calls_per_second=19) as r:
            per_commit = claim_transactions(r.store)
            await run_campaign(r)
            r.store.db.conn.set_trace_callback(None)
            return list(per_commit.values())
    assert asyncio.run(scenario()) == [1] * 6


def test_a_claim_failing_in_a_batch_rolls_it_back_and_leaves_no_flight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store locked at the 3rd claim of a batch: the two before it are rolled back with
    the batch and forgotten by the dialer (no phantom call in flight); the run pauses, plans
    again and calls every number exactly once."""
    numbers = [fiction(i) for i in range(20)]
    real_claim, seen = dialer_mod.planning.claim, [0]
    batches: list[int] = []

    def flaky(*args: Any, **kw: Any) -> Any:
        seen[0] += 1
        if seen[0] == 6:  # the window is 4 wide by now: inside a batch
            raise sqlite3.OperationalError("database is locked")
        return real_claim(*args, **kw)
    monkeypatch.setattr(dialer_mod.planning, "claim", flaky)

    async def scenario() -> tuple[Any, list[dict[str, Any]], int]:
        async with rig(tmp_path, {n: answer(["1"], prompt_s=0.05) for n in numbers},
                       max_concurrent=20, calls_per_second=200) as r:
            place_many = r.dialer.place_many

            def counted(contacts: list[dict[str, Any]]) -> Any:
                batches.append(len(contacts))
                return place_many(contacts)
            r.dialer.place_many = counted  # type: ignore[method-assign]
            report, _, _ = await run_campaign(r)
            return report, r.calls(), len(r.dialer.by_call)
    report, calls, left = asyncio.run(scenario())
    assert seen[0] > 6 and any(b > 2 for b in batches)
    assert left == 0 and report.stopped_by == "finished" and report.originated == 20
    assert Counter(c["number"] for c in calls) == Counter(numbers)
    assert {c["outcome"] for c in calls} == {"message_played"}
