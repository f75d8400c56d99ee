"""The garbage collector during a run (app.collector_for_a_run): what exists when the run starts
is frozen out of the passes, and the youngest generation holds GC_YOUNG objects, not CPython's
700 (a run with hundreds of calls in flight filled 700 in a few ms, each pass promoting the
live calls' objects: bench_baseline.py measured the collector's CPU per call threefold); both
as before once the run ends, so a process that runs more than a campaign is left as it was."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

from ivr import app
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer

from test_dialer import HASHES, SECRET, fiction, make_cfg
from test_plan_reader import _store


def test_collector_for_a_run_raises_the_young_threshold_and_puts_it_back() -> None:
    kept = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with app.collector_for_a_run():
        assert gc.get_threshold() == (max(app.GC_YOUNG, kept[0]), *kept[1:])
        assert gc.get_freeze_count() >= frozen
    assert gc.get_threshold() == kept
    try:
        with app.collector_for_a_run():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == kept


def test_a_campaign_runs_with_the_collector_tuned_and_leaves_it_as_it_was(
        tmp_path: Path) -> None:
    numbers = [fiction(40 + i) for i in range(2)]
    store = _store(tmp_path / "ivr.db", numbers)
    cfg = make_cfg(tmp_path, {})
    kept = gc.get_threshold()
    seen: list[tuple[int, ...]] = []
    canary = [object()]  # made before the run: frozen with the rest when it starts

    async def scenario() -> Any:
        async with FakePbx({n: answer(["1"]) for n in numbers}, user="ivr",
                           secret=SECRET) as pbx:
            node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
            report, _ = await asyncio.wait_for(app.run_campaign(
                cfg, store, node=node, hashes=HASHES,
                on_tick=lambda ctl: seen.append(gc.get_threshold())), 60)
            return report
    try:
        report = asyncio.run(scenario())
        assert report.originated == 2, report
        assert seen and set(seen) == {(app.GC_YOUNG, *kept[1:])}, seen
        assert gc.get_threshold() == kept
        assert not any(o is canary for o in gc.get_objects())  # out of the passes' sight
    finally:
        gc.unfreeze()  # the rest of this test process as it was
        store.close()
