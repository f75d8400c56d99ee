"""A page upload the gate refuses (a role that may not make it, a body over its cap, by its
length or once a chunked body passes it) is the console's short error page in the operator's
language, as every other page refusal: it was the API's raw English JSON. The API keeps its
JSON, and the status codes are kept."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import Backend, backend_sqlite_only
from test_web_gate import MIB, drive
from web_fixture import CAMPAIGN, login, make_web
from ivr.web import records

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
UPLOAD = f"/c/{CAMPAIGN}/contacts/upload"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(records, "MAX_UPLOAD_BYTES", 1 * MIB)
    return make_web(tmp_path, monkeypatch, backend)


def cookie(web: Any, name: str, lang: str = "fr") -> dict[str, str]:
    c = web.client()
    login(c, name)
    if lang != "fr":
        assert c.get(f"/lang/{lang}").status_code == 303
    return {"cookie": f"ivr_session={c.cookies.get('ivr_session')}"}


def page(status: int, head: dict[str, str], body: bytes) -> tuple[int, str, str, str]:
    """Status, <html lang>, title and detail of an error page."""
    assert head["content-type"].startswith("text/html"), body[:200]
    text = body.decode()
    found = [re.search(pat, text) for pat in (r'<html lang="([^"]*)"',
                                              r'<h1 id="error-title">([^<]*)</h1>',
                                              r'<code id="error-detail">([^<]*)</code>')]
    assert all(found), text[:400]
    return status, *(m[1] for m in found if m)  # type: ignore[return-value]


@backend_sqlite_only  # refused before any store write
def test_an_upload_over_its_cap_on_a_page_is_the_error_page(web) -> None:
    detail = "file: more than 1 MiB, the most a contact list may be: split the list"
    for length in (True, False):  # by its Content-Length, or once the chunked body passes it
        got = drive(web.app, UPLOAD, 4 * MIB, cookie(web, "otto"), length=length)
        assert page(*got[:3]) == (413, "fr", "Envoi trop volumineux", detail), length
        got = drive(web.app, UPLOAD, 4 * MIB, cookie(web, "otto", "en"), length=length)
        assert page(*got[:3]) == (413, "en", "Too large", detail), length
    status, head, body, _ = drive(web.app, "/login", 4 * MIB)  # any other form's body
    assert page(status, head, body)[:3] == (413, "fr", "Envoi trop volumineux")


@backend_sqlite_only  # roles: refused before the store
def test_an_upload_a_role_may_not_make_on_a_page_is_the_error_page(web) -> None:
    for path in (UPLOAD, f"/c/{CAMPAIGN}/prompts/greeting/recording"):
        status, head, body, read = drive(web.app, path, 1, cookie(web, "vera"))
        assert read == 0
        got = page(status, head, body)
        assert got[:3] == (403, "fr", "Accès refusé") and got[3].startswith("role viewer ")
        assert "Votre rôle ne permet pas cette action." in body.decode()


@backend_sqlite_only  # the API's answers stay JSON
def test_the_api_keeps_its_json_refusals(web) -> None:
    path = f"/api/campaigns/{CAMPAIGN}/contacts"
    for length in (True, False):
        status, head, body, _ = drive(web.app, path, 4 * MIB, cookie(web, "otto"),
                                      length=length)
        assert (status, head["content-type"]) == (413, "application/json")
        assert json.loads(body)["detail"].startswith("file: more than 1 MiB")
    status, head, body, _ = drive(web.app, path, 1, cookie(web, "vera"))
    assert (status, head["content-type"]) == (403, "application/json")
    assert json.loads(body) == {"detail": "role viewer may not contacts"}
