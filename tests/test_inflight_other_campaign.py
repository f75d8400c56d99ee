"""Another campaign's attempt left open by a run that died (only that campaign's own run
settles it) holds the number "in flight" for a bounded time (OTHERS_OPEN_FOR), not forever;
the campaign's own open attempt holds it until settled, as before."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from conftest import attempt, make_config
from ivr.campaign import planning
from ivr.records.contacts import import_csv
from ivr.store.sqlite_calls import OTHERS_OPEN_FOR

NOW = datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)
A, B = "campaign-a", "campaign-b"
NUMBER = "+33199000010"


def cfg(name: str) -> Any:
    return make_config(campaign={"name": name, "caller_id": "+33162000000"},
                       schedule={"demo_any_hour": True})


def imported(store: Any, tmp_path: Path, campaign: str, *numbers: str) -> None:
    path = tmp_path / f"{campaign}.csv"
    path.write_text("number\n" + "\n".join(numbers) + "\n", encoding="utf-8")
    import_csv(store, path, campaign=campaign, source=f"list-{campaign}", basis="consent",
               acquired_on="2026-01-10", default_region="FR", now=NOW)


def reasons(store: Any, name: str, at: datetime) -> dict[str, str]:
    p = planning.plan(cfg(name), store, at)
    return {**{c["number"]: "due" for c in p.due},
            **{c["number"]: v.reason for c, v in p.waiting}}


def test_a_dead_runs_open_attempt_blocks_other_campaigns_for_a_day_only(
        store: Any, tmp_path: Path) -> None:
    imported(store, tmp_path, A, NUMBER)
    imported(store, tmp_path, B, NUMBER)
    attempt(store, store.pending_contacts(A)[0], A, "+33162000000", NOW)  # A's run dies here
    soon, later = NOW + timedelta(hours=2), NOW + OTHERS_OPEN_FOR + timedelta(minutes=1)
    # A live call of A's (it may still ring): B waits.
    assert reasons(store, B, soon) == {NUMBER: "in_flight"}
    got = planning.claim(cfg(B), store, store.pending_contacts(B)[0], "n", soon)
    assert got.call is None and got.decision.reason == "in_flight"
    # A's own plan holds it until A settles it, however old.
    assert reasons(store, A, NOW + timedelta(days=40)) == {NUMBER: "in_flight"}
    # Past the bound, B's plan (its quiet test and the history it reads) and claim go on.
    assert reasons(store, B, later) == {NUMBER: "due"}
    assert reasons(store, B, NOW + timedelta(days=40)) == {NUMBER: "due"}  # no recent attempt
    past = store.history([NUMBER], later - timedelta(days=30), later - timedelta(days=60), B)
    assert not past[NUMBER].in_flight and len(past[NUMBER].attempts) == 1
    assert store.history([NUMBER], later - timedelta(days=30), later - timedelta(days=60),
                         A)[NUMBER].in_flight
    got = planning.claim(cfg(B), store, store.pending_contacts(B)[0], "n", later)
    assert got.call is not None and got.call["campaign"] == B
