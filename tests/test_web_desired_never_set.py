"""A campaign whose run state nobody has set yet (a pacing saved before any Start) shows "—"
as its desired state on the run page and the overview, not "en pause": the row the pacing
creates holds `paused` only so that it neither starts nor ends a standby run, and its
updated_at/updated_by stay empty until a run state is written (both backends)."""
from __future__ import annotations

import html
import re

import pytest

from conftest import Backend
from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DESIRED = re.compile(r'id="desired" data-state="([^"]*)"[^>]*>([^<]*)<')


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend, dialer={"max_concurrent": 6})


def _shown(web) -> tuple[object, list[tuple[str, str]], list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    c = web.client()
    login(c, "vera")
    o = c.get(f"/api/campaigns/{CAMPAIGN}/overview").json()
    run = DESIRED.findall(html.unescape(c.get(f"/c/{CAMPAIGN}/run").text))
    over = DESIRED.findall(html.unescape(c.get(f"/c/{CAMPAIGN}/overview").text))
    return o["desired"], run, over


def test_a_pacing_saved_before_any_run_state_shows_no_desired_state(web) -> None:
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    row = web.store.set_run_control(CAMPAIGN, max_concurrent=2, by="otto", now=now)
    assert row["desired"] == "paused"  # neither a Start nor a Stop for a standby run
    assert (row["updated_at"], row["updated_by"]) == ("", None)  # no run state written yet
    assert _shown(web) == (None, [("", "—")], [("", "—")])
    web.store.set_run_control(CAMPAIGN, desired="running", by="otto", now=now)
    web.app.state.overviews.drop(CAMPAIGN)  # as the console's own run control does
    desired, run, over = _shown(web)
    assert desired == "running"
    assert run == [("running", "en cours")]
