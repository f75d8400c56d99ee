"""The campaign's caps split among its live controllers (campaign/nodes.py) and what each
backend reads for it (store.peer_load): live controllers, the others' open attempts per node."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from ivr.campaign.clock import Clock, ManualClock
from ivr.campaign.nodes import JOIN_S, Peers, Shares, split
from ivr.store import Store, utc

from test_reconcile_controllers import NOW, placed_by, register

CAMPAIGN = "c1"


def test_the_shares_add_up_to_the_cap_and_a_stopped_controllers_goes_back(
        store: Store) -> None:
    assert [split(7, 3, r) for r in range(3)] == [3, 2, 2]
    assert sum(split(2, 3, r) for r in range(3)) == 2
    register(store, "ctl-a", CAMPAIGN)
    register(store, "ctl-b", CAMPAIGN)
    register(store, "ctl-c", CAMPAIGN, stopped=True)  # stopped: not a live controller
    register(store, "ctl-z", "other-campaign")
    placed_by(store, "ctl-a", "+33162000001", node="n1")  # open: in flight
    done = placed_by(store, "ctl-a", "+33162000002", node="n2")
    store.finish_unanswered(done, "busy", None, NOW, None)  # ended: not in flight
    store.controller_id = "ctl-b"
    peers = Peers.from_rows(store.peer_load(CAMPAIGN), "ctl-b")
    assert peers.ids == ("ctl-a", "ctl-b") and peers.busy_on == {"n1": 1}
    assert peers.limit("ctl-b", 10, peers.busy) == 5
    assert peers.limit("ctl-b", 4, 3) == 1  # the cap less the others' open attempts
    store.db.execute("UPDATE controllers SET stopped_at = ? WHERE id = 'ctl-a'",
                     (utc(datetime.now(timezone.utc)),))
    alone = Peers.from_rows(store.peer_load(CAMPAIGN), "ctl-b")
    assert alone.ids == ("ctl-b",) and alone.limit("ctl-b", 10, 0) == 10
    shares = Shares(store, CAMPAIGN, (), Clock())
    shares.apply(alone)
    assert shares.max_concurrent(6) == 6
    placed_by(store, "ctl-b", "+33162000003", node="n1")  # its own: never counted as others'
    assert Peers.from_rows(store.peer_load(CAMPAIGN), "ctl-b").busy == 0


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # SQLite: no lease
def test_an_expired_lease_gives_the_share_back_on_postgresql(store: Store) -> None:
    assert getattr(store, "remote", False)  # the run lock keeps SQLite's runs apart
    register(store, "ctl-a", CAMPAIGN, beat_age_s=20)  # lease 15 s: expired
    register(store, "ctl-b", CAMPAIGN)
    store.controller_id = "ctl-b"
    assert Peers.from_rows(store.peer_load(CAMPAIGN), "ctl-b").ids == ("ctl-b",)


class _Node:
    def __init__(self, name: str, cap: int) -> None:
        self.name, self.max_channels, self.up = name, cap, True


class _Store:
    controller_id = "ctl-b"


def test_a_newcomer_waits_for_the_others_then_takes_its_share_of_each_cap() -> None:
    from ivr.campaign.nodes import NodeState
    clock = ManualClock()
    n1, n2 = (NodeState(_Node(n, c), clock) for n, c in (("n1", 3), ("n2", 0)))  # type: ignore
    shares = Shares(_Store(), CAMPAIGN, (n1, n2), clock)
    assert shares.max_concurrent(4) == 4 and n1.has_room()  # not read yet: as alone
    shares.apply(Peers(("ctl-a", "ctl-b"), 1, {"n1": 1}))
    assert shares.max_concurrent(4) == 0  # the others have not all seen it yet
    clock.advance(JOIN_S)
    assert shares.max_concurrent(4) == 2  # 4 // 2 (rank 1 of 2), the others have 1 < 2
    assert n1.limit() == 1 and n2.shared_cap is None  # 3 // 2; n2 has no cap to share
    n1.calls = {"x": None}  # type: ignore[dict-item]
    assert not n1.has_room() and n1.why_not_ready() == "node n1 full"
    shares.apply(Peers(("ctl-b",), 0, {}))  # ctl-a stopped: the whole caps again
    assert shares.max_concurrent(4) == 4 and n1.has_room() and n1.limit() == 3


def test_a_controller_already_dialling_shrinks_at_once_when_another_joins() -> None:
    clock = ManualClock()
    shares = Shares(type("S", (), {"controller_id": "ctl-a"})(), CAMPAIGN, (), clock)
    shares.apply(Peers(("ctl-a",), 0, {}))
    assert shares.max_concurrent(5) == 5
    shares.apply(Peers(("ctl-a", "ctl-b"), 0, {}))
    assert shares.max_concurrent(5) == 3  # rank 0 takes the odd one; no wait: it was here
    shares.apply(Peers(("ctl-a", "ctl-b"), 4, {}))
    assert shares.max_concurrent(5) == 1  # the cap less the others' calls in flight


def test_the_load_read_walks_only_open_attempts(store: Store) -> None:
    """The read runs every second on each controller: through calls_open (schema 16), not
    every call the other controllers ever placed."""
    seen: list[tuple[str, Any]] = []
    real = store._rows  # type: ignore[attr-defined]
    store._rows = lambda sql, params=(): seen.append((sql, params)) or []  # type: ignore
    store.controller_id = "ctl-b"
    try:
        store.peer_load(CAMPAIGN)
    finally:
        del store._rows  # type: ignore[attr-defined]
    sql, params = seen[0]
    if getattr(store, "remote", False):
        with store.transaction():
            store._exec("SET LOCAL enable_seqscan = off")  # type: ignore[attr-defined]
            plan = " ".join(str(v) for r in real("EXPLAIN " + sql, params) for v in r.values())
    else:
        plan = " ".join(str(r[-1]) for r in store.db.conn.execute(
            "EXPLAIN QUERY PLAN " + sql, params))
    assert "calls_open" in plan, plan


def test_shares_of_the_nodes_smaller_than_the_campaigns_hold_the_run_back() -> None:
    """Three controllers, one node of 2 channels, a campaign cap of 6: the third one's share
    of the node is none, so its share of the campaign is none either (it waits, it does not
    re-plan over and over as on a node that is full)."""
    from ivr.campaign.nodes import NodeState
    clock = ManualClock()
    node = NodeState(_Node("n1", 2), clock)  # type: ignore[arg-type]
    shares = Shares(type("S", (), {"controller_id": "ctl-c"})(), CAMPAIGN, (node,), clock)
    shares.apply(Peers(("ctl-c",), 0, {}))  # it was dialling alone: no newcomer's wait
    shares.apply(Peers(("ctl-a", "ctl-b", "ctl-c"), 0, {}))
    assert node.limit() == 0 and shares.max_concurrent(6) == 0
    shares.apply(Peers(("ctl-a", "ctl-c"), 0, {}))
    assert node.limit() == 1 and shares.max_concurrent(6) == 1


def test_a_store_not_held_by_a_run_reads_every_live_controllers_load(store: Store) -> None:
    register(store, "ctl-a", CAMPAIGN)
    placed_by(store, "ctl-a", "+33162000004", node="n1")
    store.controller_id = None
    assert [(r["controller"], r["node"], r["n"]) for r in store.peer_load(CAMPAIGN)] == \
        [("ctl-a", "n1", 1)]
