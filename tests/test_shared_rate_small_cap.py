"""rv3's review: with a campaign cap of 1 and two live controllers, only one may dial (the
other's share is 0), so that one paces at the whole rate; the campaign ran at half its rate."""
from __future__ import annotations

from ivr.campaign.clock import ManualClock
from ivr.campaign.nodes import Peers, Shares


def _shares(me: str) -> Shares:
    shares = Shares(None, "c1", (), ManualClock())
    shares.me = me
    shares.apply(Peers(ids=("a", "b")))
    return shares


def test_with_cap_1_the_one_controller_that_may_dial_keeps_the_whole_rate() -> None:
    a, b = _shares("a"), _shares("b")
    assert (a.peers.limit("a", 1, 0), b.peers.limit("b", 1, 0)) == (1, 0)
    assert a.interval(1.0, 1) == 1.0  # the campaign's 1 call/s, from the one that dials
    assert a.interval(1.0, 4) == 2.0 and b.interval(1.0, 4) == 2.0  # both dial: half each
