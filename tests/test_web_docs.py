"""/api/docs: the API's documentation, rendered on the server from the OpenAPI document, with
no CDN and no inline script (the console's CSP, script-src 'self', would block them)."""
from __future__ import annotations

import html as html_mod
import re

import pytest

from web_fixture import make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch)


def test_the_docs_page_lists_every_api_path_and_method(web) -> None:
    c = web.client()
    doc = c.get("/api/openapi.json").json()
    r = c.get("/api/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = html_mod.unescape(r.text)
    api_paths = [p for p in doc["paths"] if p.startswith("/api/")]
    assert len(api_paths) >= 15
    for path, item in doc["paths"].items():
        for method in item:
            assert f'data-path="{path}" data-method="{method.upper()}"' in page, (path, method)
    assert 'href="/api/openapi.json"' in page
    control = page.split('data-path="/api/campaigns/{campaign}/control" data-method="POST"')[1]
    control = control.split("</article>")[0]
    assert "admin, operator" in control and "viewer" not in control  # roles from the code
    assert "ControlBody" in control and "campaign" in control and "422" in control
    erase = page.split('data-path="/api/numbers/{number}/erase"')[1].split("</article>")[0]
    assert '<span class="roles">admin</span>' in erase
    overview = page.split('data-path="/api/campaigns/{campaign}/overview"')[1]
    assert '<span class="roles">admin, operator, viewer</span>' in overview.split("</article>")[0]
    assert 'id="schema-PacingBody"' in page


def test_every_api_route_names_the_roles_that_may_call_it(web) -> None:
    from ivr.web import docs
    ops = docs.api_docs(web.app)["operations"]
    assert ops and all(op["roles"] for op in ops), [op["path"] for op in ops if not op["roles"]]


def test_the_docs_page_needs_no_cdn_and_no_inline_script(web) -> None:
    c = web.client()
    r = c.get("/api/docs")
    page = r.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "external URL"
    assert "cdn" not in page.lower()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handler either
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert c.get("/api/redoc").status_code == 404
    assert c.get("/docs").status_code in (303, 404)
    assert c.get("/api/docs/oauth2-redirect").status_code == 404


def test_the_docs_page_is_french_with_an_english_switch(web) -> None:
    c = web.client()
    assert "Documentation de l&#39;API" in c.get("/api/docs").text
    c.get("/lang/en?next=/api/docs")
    assert "API documentation" in c.get("/api/docs").text


def test_a_route_whose_source_cannot_be_read_is_never_shown_public(monkeypatch) -> None:
    """An install without .py files: the page cannot read a route's check, so it says '?'."""
    import inspect

    from ivr.web import docs

    def no_source(obj):  # type: ignore[no-untyped-def]
        raise OSError("could not get source code")
    monkeypatch.setattr(inspect, "getsource", no_source)
    from fastapi import FastAPI
    from ivr.web.api import router
    app = FastAPI()
    app.include_router(router, prefix="/api")
    actions = docs.route_actions(app)
    assert actions and set(actions.values()) == {docs.UNKNOWN}
    assert docs.roles_for(docs.UNKNOWN) == ["?"] and docs.roles_for("") == []
