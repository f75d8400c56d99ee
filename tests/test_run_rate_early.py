"""Calls per minute and the ETA in a run's first seconds (hw4 finding 5): the first call 0.1 s
into a run is not 600 calls a minute, nor the rest of the list a few seconds away."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.campaign import planning
from ivr.campaign.clock import ManualClock
from ivr.campaign.state import RunState

from test_run_state import cfg, store_with


def test_early_rate_and_eta_stay_near_the_real_pace(tmp_path: Path) -> None:
    clock = ManualClock()
    s = store_with(tmp_path, 40)
    state = RunState("c1", s, clock, max_concurrent=5, rate_window_s=60)
    state.planned(planning.plan(cfg(), s, clock.now()))
    rates, etas = [], []
    clock.advance(0.1)
    for _ in range(30):  # one call every 2 s: 30 calls a minute
        state.called()
        snap = state.publish()
        rates.append(snap.rate_per_min)
        etas.append(snap.eta_s)
        clock.advance(2.0)
    # Never far above the real 30/min (it was 600 at the first call), nor an ETA of seconds
    # for 40 contacts at 30 a minute (80 s).
    assert max(rates) <= 36.0, rates
    assert all(e is not None and e >= 40 * 60 / 36.0 for e in etas), etas
    # And it converges: past the first 20 s, the real rate.
    assert rates[-1] == pytest.approx(30.0, rel=0.1)
