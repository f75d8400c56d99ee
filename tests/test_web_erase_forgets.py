"""After an erasure from the console, nothing it keeps in memory holds the number. Found in
review: an opposition import's rejected lines (which quote the line as written) stayed
downloadable, report.csv's kept blocks and report.json stayed in memory until the next
download, the preflight until its refresh. SQLite only: the console's caches, not the store."""
from __future__ import annotations

import pytest

from conftest import add_contact, attempt, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
NUMBER = "+33612345678"


@pytest.fixture
def web(backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


@backend_sqlite_only
def test_the_console_forgets_what_quoted_the_erased_number(web) -> None:  # type: ignore[no-untyped-def]
    row = add_contact(web.store, NUMBER, at=NOW, name="Jeanne", campaigns=(CAMPAIGN,))
    call = attempt(web.store, row, CAMPAIGN, "+33162000000", NOW)
    web.store.finish_unanswered(call["id"], "no_answer", "19", NOW, None)
    c = web.client()
    token = login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout-import",
               data={"via": "post", "csrf_token": token},
               files={"file": ("opp.csv", b"number\n06 12 34 56 78 poste 12\n", "text/csv")})
    assert r.status_code == 200, r.status_code
    link = r.text.split('id="optout-rejects-download" href="')[1].split('"')[0]
    assert "06 12 34 56 78" in c.get(link).text
    for name in ("report.csv", "report.json"):
        assert c.get(f"/api/campaigns/{CAMPAIGN}/{name}").status_code == 200
    state = web.app.state
    assert state.kept_csv.get(CAMPAIGN) and state.reports._kept
    answer = c.post(f"/api/numbers/{NUMBER}/erase", json={"confirm": NUMBER},
                    headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert c.get(link).status_code == 404
    assert not state.kept_csv.get(CAMPAIGN) and not state.reports._kept
    assert state.rejects == {}


def test_what_is_computed_across_an_erasure_is_not_kept() -> None:
    """Found in review of the above: a report.json or report.csv already computing when the
    erasure cleared the caches stored its result after the clear (the number in memory
    again, though never served: its marker had moved)."""
    from ivr.store.base import Chunk
    from ivr.web.cache import KeptBlocks, Marked
    reports = Marked(lambda: "mark")

    def computing() -> str:
        reports.clear()  # the erasure lands while the value is computed
        return "with the number"
    assert reports.get("c", computing) == "with the number"  # answered, not kept
    assert reports.get("c", lambda: "fresh") == "fresh"
    kept = KeptBlocks()
    since = kept.cleared()
    kept.clear()
    kept.put("c", {0: Chunk(1, 1, b"+33612345678\n")}, since=since)
    assert kept.get("c") == {}
    kept.put("c", {0: Chunk(2, 1, b"+33612345679\n")}, since=kept.cleared())
    assert list(kept.get("c")) == [0]
