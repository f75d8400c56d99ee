"""bench/store_cpu.py, the instrument behind bench_baseline's `--store-split`: it counts each
store call once (its outermost method) and leaves the store's class as it found it."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from ivr.store.sqlite import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from store_cpu import StoreCpu  # noqa: E402

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def test_a_method_that_calls_others_counts_once() -> None:
    store, timer = Store.memory(), StoreCpu()
    with timer.wrapping(Store):
        store.add_optout("+33612345678", "post", NOW)  # its transaction and number_hash inside
        store.number_hash("+33612345679")  # called on its own: counted on its own
    assert dict(timer.calls) == {"add_optout": 1, "number_hash": 1}
    assert timer.cpu["add_optout"] > 0
    out = timer.per_call(2)
    assert out["store_ms_per_call"] == round(sum(timer.cpu.values()) / 2 * 1000, 3)
    assert list(out["store_top"]) == [n for n, _ in timer.cpu.most_common()]  # type: ignore


def test_the_class_is_left_as_it_was() -> None:
    before = {n: vars(Store).get(n) for n in dir(Store)}
    inherited = Store.add_optout
    with StoreCpu().wrapping(Store):
        assert Store.add_optout is not inherited
    assert {n: vars(Store).get(n) for n in dir(Store)} == before
    assert Store.add_optout is inherited
    assert Store.memory().add_optout("+33612345678", "post", NOW) is True  # still works


class OwnHash(Store):
    def number_hash(self, number: str) -> str:  # a method of the class itself, not inherited
        return super().number_hash(number)


def test_a_method_of_the_class_itself_is_put_back() -> None:
    own = vars(OwnHash)["number_hash"]
    with StoreCpu().wrapping(OwnHash):
        assert vars(OwnHash)["number_hash"] is not own
    assert vars(OwnHash)["number_hash"] is own
    assert "add_optout" not in vars(OwnHash)  # an inherited one is not left behind
