"""Found by a probe of the console: a store locked past the wait (a purge, a big import)
answered a bare 500 to an opposition, a Pause or a login; and an opposition file sent with the
page's « — choisir — » channel was recorded as received by post."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import store_at
from web_fixture import CAMPAIGN, Web, csrf_of, login, make_web
from ivr.web import create_app
from ivr.web.auth import LoginLimiter


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process's write transaction on the file, as `ivr purge` holds one."""
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Web:
    w = make_web(tmp_path, monkeypatch)
    assert w.path is not None

    def quick() -> object:  # the console's connections, waiting 0.2 s for a lock, not 5
        return store_at(w.path, busy_timeout_s=0.2)
    w.app = create_app(w.cfg, quick, limiter=LoginLimiter(max_failures=5, window_s=300))
    return w


def test_a_locked_store_answers_one_line_in_the_api_and_a_page(web: Web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    page = c.get(f"/c/{CAMPAIGN}/rights")
    token = csrf_of(page.text)
    with locked(web.path):  # type: ignore[arg-type]
        r = c.post("/api/optouts", json={"number": "+33199000010", "via": "post"}, headers=h)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        detail = r.json()["detail"]
        assert detail.startswith("store locked by another ivr command") and \
            "nothing after that point was written" in detail and "\n" not in detail
        r = c.post(f"/c/{CAMPAIGN}/rights/optout", data={
            "number": "+33199000010", "via": "post", "csrf_token": token})
        assert r.status_code == 503 and "La base est occupée ou injoignable" in r.text
        assert "rien n&#39;a été enregistré après ce point" in r.text
    look = c.get("/api/optouts/+33199000010").json()
    assert look["opted_out"] is False  # said not done, and not done


@pytest.mark.parametrize("sent", [{"via": ""}, {}])
def test_an_opposition_file_without_its_channel_is_refused(web: Web, sent: dict) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    files = {"file": ("o.csv", b"number\n+33199000010\n", "text/csv")}
    r = c.post("/api/optouts/import", headers=h, data=sent, files=files)
    assert r.status_code == 400 and "opt-out channel" in r.json()["detail"]
    token = csrf_of(c.get(f"/c/{CAMPAIGN}/rights").text)
    r = c.post(f"/c/{CAMPAIGN}/rights/optout-import", data={**sent, "csrf_token": token},
               files=files)
    assert r.status_code == 400 and "choisissez comment la demande est arrivée" in r.text
    assert c.get("/api/optouts/+33199000010").json()["opted_out"] is False


def test_an_opposition_shows_in_its_list_at_once_and_paging_echoes_its_limit(
        web: Web) -> None:
    """The list of a contact opposed in the console said `pending` for 5-16 s; a `limit`
    above 1,000 was echoed as asked while 1,000 rows came, and a script paging by it skipped
    the rest."""
    from conftest import add_contact
    from web_fixture import NOW
    for i in range(3):
        add_contact(web.store, f"+3319900002{i}", at=NOW, source="seq", campaigns=(CAMPAIGN,))
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    url = f"/api/campaigns/{CAMPAIGN}/contacts"
    before = c.get(url, params={"limit": 5000}).json()
    assert before["limit"] == 1000 and len(before["contacts"]) == 3
    assert c.post("/api/optouts", json={"number": "+33199000020", "via": "email"},
                  headers=h).json()["added"] is True
    lists = c.get(url).json()["lists"]
    assert lists != before["lists"] and "opted_out" in str(lists), lists


def test_letters_in_an_opposition_number_are_quoted_short(web: Web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "ada")}
    r = c.post("/api/optouts", json={"number": "x" * 100_000, "via": "post"}, headers=h)
    assert r.status_code == 400 and len(r.text) < 1_000, len(r.text)
