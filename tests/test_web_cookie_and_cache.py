"""Found in review: IVR_WEB_SECURE_COOKIE=true or =yes left the session cookie's Secure flag
off without a word; the GDPR export, the proof of consent and the contact pages outside /api/
had no Cache-Control, so a shared computer's browser kept them after logout."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivr.errors import IvrError
from ivr.web.app import secure_cookie
from web_fixture import login, make_web


@pytest.mark.parametrize(("raw", "on"), [("1", True), ("true", True), ("Yes", True),
                                         ("on", True), ("0", False), ("", False),
                                         ("false", False), ("off", False)])
def test_the_secure_cookie_setting_reads_the_usual_words(
        raw: str, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_WEB_SECURE_COOKIE", raw)
    assert secure_cookie() is on


def test_another_word_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_WEB_SECURE_COOKIE", "https")
    with pytest.raises(IvrError, match=r"^IVR_WEB_SECURE_COOKIE='https' is neither on nor off"):
        secure_cookie()


def test_secure_true_sets_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_WEB_SECURE_COOKIE", "true")
    client = make_web(tmp_path, monkeypatch).client()
    client.base_url = "https://testserver"  # type: ignore[assignment]
    page = client.get("/login")
    assert "secure" in page.headers["set-cookie"].lower(), page.headers["set-cookie"]


def test_every_page_and_download_but_static_is_no_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = make_web(tmp_path, monkeypatch)
    client = web.client()
    login(client, "ada")
    for path in ("/c/demo/contacts", "/c/demo/rights?number=%2B33612345678",
                 "/c/demo/rights/export?number=%2B33612345678", "/c/demo/overview", "/login"):
        r = client.get(path)
        assert r.status_code in (200, 303), (path, r.status_code)
        assert r.headers.get("cache-control") == "no-store", path
    static = client.get("/static/console.js")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"


def test_an_opposition_look_up_and_report_csv_are_audited_with_their_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: a viewer (or a viewer's token) could learn whether, when and how a
    number objected through GET /api/optouts/{number}, or download every number called, and
    leave no trace; the page's look-up of the same number was audited."""
    import sqlite3
    from web_fixture import NOW
    web = make_web(tmp_path, monkeypatch)
    web.store.add_optout("+33199000010", "post", NOW)  # held: its keyed hash is the subject
    client = web.client()
    login(client, "vera")
    assert client.get("/api/optouts/+33199000010").json()["opted_out"]
    assert client.get("/api/campaigns/demo/report.csv").status_code == 200
    with sqlite3.connect(tmp_path / "t.db") as db:
        rows = db.execute("SELECT action, actor, subject_hash IS NOT NULL, detail FROM audit "
                          "WHERE action IN ('optout_viewed', 'report_downloaded') "
                          "ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("optout_viewed", "vera", 1),
                                     ("report_downloaded", "vera", 0)], rows
    assert '"campaign": "demo"' in rows[1][3] and "+33" not in rows[1][3]
