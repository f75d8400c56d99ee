"""Runs of different campaigns on one store and one PBX node (issue 18, item 3): a run's
reconciliation and its calls in flight are its own campaign's only, so run B never settles
or adopts (and waits on) run A's calls."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone
from typing import Any

from conftest import Backend
from conftest import add_contact, attempt
from ivr.store import Store
from test_dialer import answer, fiction, make_cfg, rig

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def test_open_calls_of_one_campaign() -> None:
    s = Store.memory()
    a = attempt(s, add_contact(s, "+33162000010", at=NOW), "A", "+33162000000", NOW, "pbx")
    b = attempt(s, add_contact(s, "+33162000011", at=NOW), "B", "+33162000000", NOW, "pbx")
    assert [r["id"] for r in s.open_calls("pbx", "A")] == [a["id"]]
    assert [r["id"] for r in s.open_calls(campaign="B")] == [b["id"]]
    assert [r["id"] for r in s.open_calls("pbx")] == [a["id"], b["id"]]


def test_a_run_never_reconciles_another_campaigns_attempts(backend: Backend) -> None:
    """An attempt of campaign 'other' open on the same node (its run is live, or died) is
    neither settled as error nor adopted by this campaign's run; its own leftover is."""
    mine_n, theirs_n = fiction(10), fiction(11)
    other_cfg = dataclasses.replace(make_cfg(backend), campaign=dataclasses.replace(
        make_cfg(backend).campaign, name="other"))
    ids: dict[str, int] = {}

    def leftovers(store: Store) -> None:
        for number, cfg in ((mine_n, make_cfg(backend)), (theirs_n, other_cfg)):
            row = store.one("SELECT * FROM contacts WHERE number = ?", (number,))
            ids[number] = attempt(store, row, cfg.campaign.name, "+33199000000", NOW,
                                  "pbx")["id"]

    async def scenario() -> tuple[list[dict[str, Any]], set[str]]:
        async with rig(backend, {mine_n: answer(), theirs_n: answer()}, numbers=[mine_n],
                       setup=leftovers_with(theirs_n, leftovers)) as r:
            await r.settled()  # the start's reconciliation
            return r.calls(), {f.number for f in r.dialer.inflight.values()}
    calls, inflight = asyncio.run(scenario())
    by_id = {c["id"]: c for c in calls}
    assert (by_id[ids[mine_n]]["outcome"], by_id[ids[mine_n]]["stage"]) == ("error",
                                                                             "reconciled")
    assert by_id[ids[theirs_n]]["outcome"] is None and theirs_n not in inflight


def leftovers_with(number: str, then: Any) -> Any:
    """The other campaign's contact (added as its own import would), then the leftovers."""
    def setup(store: Store) -> None:
        add_contact(store, number, at=NOW, campaigns=("other",))
        then(store)
    return setup
