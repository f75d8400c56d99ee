"""The overview's percent complete (web/service._progress): with contacts still pending it never
reads 100.0 (1 left of 20,000 rounded up, beside a 2-minute ETA); all done is 100.0."""
from __future__ import annotations

from ivr.web.service import _progress


def test_one_pending_of_many_is_not_shown_done() -> None:
    pct, eta = _progress({"contacts": {"pending": 1, "done": 19_999}}, 0.5)
    assert (pct, eta) == (99.9, 120)


def test_every_contact_done_is_100_and_no_eta() -> None:
    assert _progress({"contacts": {"done": 20_000}}, 3.0) == (100.0, None)
    assert _progress({"contacts": {"pending": 1, "done": 3}}, 0.0) == (75.0, None)
