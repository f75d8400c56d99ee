"""A result page drawn at a form's POST address (the contacts upload, the opposition import)
links to the section's page, which takes a GET: its language switch and its pager's links
used to return to the POST address, and the browser showed 405 Method Not Allowed. The page's
own address is kept by every page drawn for a GET."""
from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from web_fixture import CAMPAIGN, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch)  # the store plays no part: pages and links


def _links(page: str) -> dict[str, str]:
    """The language switch's `next` and the pager's links (→, ←) of a page."""
    text = html.unescape(page)
    lang = re.search(r'id="lang-switch" href="([^"]+)"', text)
    assert lang, "no language switch"
    found = {"next": parse_qs(urlsplit(lang.group(1)).query)["next"][0]}
    for arrow in ("→", "←"):
        # named for a screen reader, not by the arrow alone (access_words.py)
        link = re.search(rf'<a href="([^"]+)" rel="(?:next|prev)" aria-label="(?:Page '
                         rf'suivante|Page précédente|Next page|Previous page)">{arrow}</a>', text)
        if link:
            found[arrow] = link.group(1)
    return found


def _upload(c, token: str, n: int):  # type: ignore[no-untyped-def]
    body = "number\n" + "".join(f"+331990010{i:02d}\n" for i in range(n))
    return c.post(f"/c/{CAMPAIGN}/contacts/upload",
                  files={"file": ("list.csv", body.encode(), "text/csv")},
                  data={"source": "door-to-door", "basis": "consent", "csrf_token": token})


def test_the_upload_result_links_to_the_contacts_page(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = _upload(c, token, 100)
    assert r.status_code == 200, r.text
    links = _links(r.text)
    assert links["next"] == f"/c/{CAMPAIGN}/contacts"
    assert links["→"] == f"/c/{CAMPAIGN}/contacts?offset=100"  # 100 a page: a next one
    after = c.get(f"/lang/en?next={links['next']}")
    assert after.headers["location"] == f"/c/{CAMPAIGN}/contacts"
    assert c.get(links["next"]).status_code == 200
    second = c.get(links["→"])
    assert second.status_code == 200
    assert _links(second.text)["←"] == f"/c/{CAMPAIGN}/contacts?offset=0"
    # a GET: its own page, with its query (the switch kept the page one was on)
    assert _links(second.text)["next"] == f"/c/{CAMPAIGN}/contacts?offset=100"


def test_the_opposition_import_result_links_to_the_rights_page(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout-import", data={"via": "post", "csrf_token": token},
               files={"file": ("opp.csv", b"number\n+33199002001\nnot-a-number\n", "text/csv")})
    assert r.status_code == 200 and 'id="optout-import-summary"' in r.text
    assert _links(r.text)["next"] == f"/c/{CAMPAIGN}/rights"
    assert c.get(f"/c/{CAMPAIGN}/rights").status_code == 200


def test_the_language_switch_keeps_the_query(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Found in review: on the login page the switch dropped `?next=…`, so the operator landed
    on the overview; on the rights page it dropped the number looked up."""
    from urllib.parse import unquote
    from web_fixture import make_web
    c = make_web(tmp_path, monkeypatch).client()
    page = c.get("/login", params={"next": f"/c/{CAMPAIGN}/run"}).text
    link = html.unescape(re.search(r'id="lang-switch" href="([^"]+)"', page).group(1))
    assert unquote(unquote(link)) == f"/lang/en?next=/login?next=/c/{CAMPAIGN}/run", link
    back = c.get(link)
    assert back.status_code == 303 and unquote(back.headers["location"]) == \
        f"/login?next=/c/{CAMPAIGN}/run"
