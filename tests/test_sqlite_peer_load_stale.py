"""SQLite: a crashed run's controllers row (stopped_at NULL after a reboot, a container restart
or a reused pid, which same_host cannot judge gone) never counts as a live peer. While this
store holds the campaign's run lock no other run of the campaign is alive, so a lone
`ivr run` keeps its whole cap and rate; another campaign's row counts on a node only while
its run holds that campaign's run lock (rv3's review finding: a lone run placed nothing at cap 1)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import Peers, Shares
from ivr.store import Store, utc
from ivr.store.base import RunOwner

STALE = "0000aaaa11111111"  # a previous boot's tag: same_host cannot tell it is gone


def _stale_row(store: Store, campaign: str, now: datetime, snapshot_at: datetime | None,
               controller: str = STALE) -> None:
    store.db.execute("INSERT INTO controllers (id, campaign, host, pid, started_at, "
                     "heartbeat_at, lease_s) VALUES (?, ?, ?, 1, ?, ?, 15)",
                     (controller, campaign, RunOwner.this_process(now).host, utc(now),
                      utc(now)))
    if snapshot_at is not None:
        store.db.execute("INSERT INTO run_snapshots (campaign, controller, at, snapshot) "
                         "VALUES (?, ?, ?, ?)", (campaign, controller, utc(snapshot_at),
                                                 json.dumps({"nodes": [{"name": "n1"}]})))


def test_a_crashed_runs_row_of_this_campaign_is_no_peer(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "ivr.db"), optout_key=b"k" * 32)
    now = datetime.now(timezone.utc)
    _stale_row(store, "c1", now, now)
    with store.hold_run(RunOwner.this_process(now), "c1"):
        me = store.controller_id
        rows = store.peer_load("c1")
        assert {r["controller"] for r in rows} == {me}
        shares = Shares(store, "c1", (), ManualClock())
        shares.apply(Peers.from_rows(rows, me, "c1"))
        assert shares.max_concurrent(1) == 1 and shares.interval(1.0) == 1.0


def test_another_campaigns_row_counts_only_while_its_run_holds_the_campaign(
        tmp_path: Path) -> None:
    path = str(tmp_path / "ivr.db")
    store = Store.open(path, optout_key=b"k" * 32)
    now = datetime.now(timezone.utc)
    with Store.open(path, optout_key=b"k" * 32).hold_run(RunOwner.this_process(now), "other"):
        pass  # an earlier run of 'other' made its lock file, as the crashed one's did
    _stale_row(store, "other", now, now, controller="0000aaaa22222222")  # crashed, pid 1

    def others() -> set[str]:
        return {r["controller"] for r in store.peer_load("c1") if r["campaign"] == "other"}
    with store.hold_run(RunOwner.this_process(now), "c1"):
        assert others() == set()  # nobody holds 'other': its open row is a crashed run's
        other_run = Store.open(path, optout_key=b"k" * 32)
        with other_run.hold_run(RunOwner.this_process(now), "other"):
            other_run.publish_snapshot("other", other_run.controller_id,
                                       {"nodes": [{"name": "n1"}]}, now)  # it may dial n1
            assert others() == {other_run.controller_id}  # the live one, not pid 1's row
        assert others() == set()
