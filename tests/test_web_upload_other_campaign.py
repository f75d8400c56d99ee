"""Found in review: the console read every campaign's upload with its own config's
contacts.allow_countries. A console whose campaign allows Belgian numbers imported one into
campaign B, whose config refuses foreign numbers, and B's run then called it. Another
campaign's list is now read with the default rule (no foreign numbers), the upload says so in
a warning (in French on a French page), and its own campaign's list keeps its config's rule."""
from __future__ import annotations

import html

import pytest

from web_fixture import CAMPAIGN, NOW, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
OTHER = "autre-candidat"
BELGIAN = "+3225551234"


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    web = make_web(tmp_path, monkeypatch, contacts={"allow_countries": ["BE"]})
    web.store.set_run_control(OTHER, desired="stopped", by="ada", now=NOW)  # in the store
    return web


def _upload(c, token: str, campaign: str):  # type: ignore[no-untyped-def]
    return c.post(f"/api/campaigns/{campaign}/contacts", headers={"X-CSRF-Token": token},
                  files={"file": ("l.csv", f"number\n{BELGIAN}\n0612345678\n".encode(),
                                  "text/csv")},
                  data={"source": "l", "basis": "consent", "acquired_on": "2026-11-01"})


def test_another_campaigns_upload_takes_no_foreign_number(web) -> None:
    c = web.client()
    token = login(c, "otto")
    other = _upload(c, token, OTHER).json()
    assert other["added"] == 1 and [r["line"] for r in other["rejected"]] == [2]
    assert "foreign number (+32)" in other["rejected"][0]["reason"]
    assert any(w.startswith(f"campaign '{OTHER}' is not this console's config's")
               for w in other["warnings"])
    own = _upload(c, token, CAMPAIGN).json()
    # +32 allowed; 06 is OTHER's contact, new to this campaign: added (one row still)
    assert own["added"] == 2 and own["rejected_total"] == 0
    assert own["merged"] + own["unchanged"] == 0
    assert not any("is not this console's" in w for w in own["warnings"])


def test_the_warning_reads_in_french_on_a_french_page(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{OTHER}/contacts/upload", data={
        "source": "l", "basis": "consent", "acquired_on": "2026-11-01", "csrf_token": token},
        files={"file": ("l.csv", f"number\n{BELGIAN}\n".encode(), "text/csv")})
    page = html.unescape(r.text)
    assert f"la campagne '{OTHER}' n'est pas celle de la configuration de cette console" in page
