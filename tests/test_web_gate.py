"""What the console refuses before a route reads the request (ivr/web/gate.py): an upload from
nobody or from a role that may not make it, a body over its route's cap (by Content-Length, or
a chunked one once it grows past the cap), a NUL character in a query parameter or form field;
and where the login returns after a form's POST found the session ended. The uploads are sent
to the app as a server would, in chunks made as the app asks for them, to count what it read."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import Backend, backend_sqlite_only
from web_fixture import CAMPAIGN, NOW, PASSWORDS, csrf_of, login, make_web
from ivr.web import prompts, records
from ivr.web_users import new_token, token_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MIB = 1024 * 1024
HEAD = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n")
TAIL = b"\r\n--B--\r\n"


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def drive(app: Any, path: str, size: int, headers: dict[str, str] | None = None,
          length: bool = True) -> tuple[int, dict[str, str], bytes, int]:
    """POST a multipart file of `size` bytes to `app`, 1 MiB a message (no Content-Length
    when not `length`: chunked). Returns status, headers, body and the file bytes read."""
    parts = [HEAD, *([b"x" * MIB] * (size // MIB)), TAIL]
    sent = {"i": 0, "bytes": 0}
    head = {"host": "testserver", "content-type": "multipart/form-data; boundary=B",
            **(headers or {})}
    if length:
        head["content-length"] = str(sum(map(len, parts)))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in head.items()]}
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        i = sent["i"]
        if i >= len(parts):
            await asyncio.sleep(3600)  # the whole body sent: a client waits for its answer
        sent["i"] += 1
        sent["bytes"] += len(parts[i]) if 0 < i < len(parts) - 1 else 0
        return {"type": "http.request", "body": parts[i], "more_body": i < len(parts) - 1}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    start = next(m for m in out if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body,
            sent["bytes"])


def cookie_of(web: Any, name: str) -> dict[str, str]:
    c = web.client()
    login(c, name)
    return {"cookie": f"ivr_session={c.cookies.get('ivr_session')}"}


@backend_sqlite_only  # refused before any store write
def test_an_anonymous_upload_is_refused_before_its_body_is_read(web) -> None:
    status, head, body, read = drive(web.app, f"/api/campaigns/{CAMPAIGN}/contacts", 8 * MIB)
    assert (status, read) == (401, 0)
    assert b"not logged in" in body and head["www-authenticate"] == "Bearer"
    status, head, _, read = drive(web.app, f"/c/{CAMPAIGN}/contacts/upload", 8 * MIB)
    assert (status, read) == (303, 0)
    assert head["location"] == f"/login?next=/c/{CAMPAIGN}/contacts"
    status, _, _, read = drive(web.app, f"/api/campaigns/{CAMPAIGN}/contacts", 8 * MIB,
                               {"authorization": "Bearer not-a-token"})
    assert (status, read) == (401, 0)
    for path in ("/api/optouts/import", f"/c/{CAMPAIGN}/rights/optout-import",
                 f"/api/campaigns/{CAMPAIGN}/prompts/greeting/recording",
                 f"/c/{CAMPAIGN}/prompts/greeting/recording",
                 "/api/campaigns/a/b/contacts"):  # a campaign named a/b
        assert drive(web.app, path, 4 * MIB)[3] == 0, path
    status, head, _, read = drive(web.app, "/c/a/b/contacts/upload", 4 * MIB)
    assert (status, read, head["location"]) == (303, 0, "/login?next=/c/a%252Fb/contacts")
    assert web.store.lists_of(CAMPAIGN) == []


@backend_sqlite_only  # roles and sizes: refused before the store
def test_a_role_that_may_not_upload_is_refused_before_the_body(web) -> None:
    token = new_token()
    web.store.add_api_token("vera", token_hash(token), NOW)
    for headers in (cookie_of(web, "vera"), {"authorization": f"Bearer {token}"}):
        status, _, body, read = drive(web.app, f"/api/campaigns/{CAMPAIGN}/contacts",
                                      4 * MIB, headers)
        assert (status, read) == (403, 0) and b"role viewer may not contacts" in body


@backend_sqlite_only  # sizes: refused before the store
def test_an_upload_over_its_cap_is_refused_by_its_length_before_it_is_read(
        web, monkeypatch) -> None:
    monkeypatch.setattr(records, "MAX_UPLOAD_BYTES", 1 * MIB)
    monkeypatch.setattr(prompts, "MAX_RECORDING_BYTES", 2 * MIB)
    otto = cookie_of(web, "otto")
    for path in (f"/api/campaigns/{CAMPAIGN}/contacts", f"/c/{CAMPAIGN}/contacts/upload",
                 "/c/a/b/contacts/upload"):
        status, _, body, read = drive(web.app, path, 4 * MIB, otto)
        assert (status, read) == (413, 0), path
        detail = "file: more than 1 MiB, the most a contact list may be: split the list"
        if path.startswith("/api/"):
            assert body.decode() == '{"detail":"%s"}' % detail
        else:  # a page: the console's error page (test_web_gate_pages.py)
            assert f'<code id="error-detail">{detail}</code>' in body.decode(), path
    status, _, body, read = drive(web.app, f"/c/{CAMPAIGN}/prompts/greeting/recording",
                                  4 * MIB, cookie_of(web, "ada"))
    assert (status, read) == (413, 0) and b"more than 2 MiB, the most a recording" in body


@backend_sqlite_only  # sizes: refused before the store
def test_a_chunked_upload_stops_being_read_past_its_cap(web, monkeypatch) -> None:
    monkeypatch.setattr(records, "MAX_UPLOAD_BYTES", 1 * MIB)
    otto = cookie_of(web, "otto")
    status, _, body, read = drive(web.app, f"/api/campaigns/{CAMPAIGN}/contacts", 16 * MIB,
                                  otto, length=False)
    assert status == 413 and b"more than 1 MiB" in body
    assert read <= 2 * MIB  # the cap, the form's slack, the message that crossed it


@backend_sqlite_only  # sizes: refused before the store
def test_any_other_body_over_a_mib_is_refused_unread_even_anonymous(web) -> None:
    for path in ("/login", f"/c/{CAMPAIGN}/run/control", f"/api/campaigns/{CAMPAIGN}/control"):
        status, _, body, read = drive(web.app, path, 4 * MIB)
        assert (status, read) == (413, 0), path
        assert b"more than 1 MiB, the most a form or an API call takes" in body


@backend_sqlite_only  # the gate lets the ordinary upload through
def test_an_upload_under_its_cap_still_works(web) -> None:
    c = web.client()
    token = login(c, "otto")
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", data={"source": "adherents",
                                                            "basis": "member_file"},
               files={"file": ("a.csv", b"number\n+33199000011\n")},
               headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["added"] == 1


# -- the login after a form's POST found the session ended -----------------------------------
@backend_sqlite_only  # session mechanics
def test_a_post_after_the_session_ended_returns_to_its_page_not_to_the_post_url(web) -> None:
    a = web.client()
    token = login(a, "otto")
    b = web.client()
    b.post("/logout", data={"csrf_token": login(b, "otto")})  # ends a's session too
    r = a.post(f"/c/{CAMPAIGN}/run/control", data={"action": "pause", "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=/c/{CAMPAIGN}/run"
    r = a.post(f"/c/{CAMPAIGN}/rights/optout", data={"number": "x", "csrf_token": token},
               headers={"referer": f"http://testserver/c/{CAMPAIGN}/rights?number=%2B33199"})
    assert r.headers["location"] == f"/login?next=/c/{CAMPAIGN}/rights%3Fnumber%3D%252B33199"
    r = a.post(f"/c/{CAMPAIGN}/run/pacing", data={"csrf_token": token},
               headers={"referer": "http://evil.example/c/demo/run"})
    assert r.headers["location"] == f"/login?next=/c/{CAMPAIGN}/run"
    nxt = a.get(r.headers["location"])
    r = a.post("/login", data={"username": "otto", "password": PASSWORDS["otto"],
                               "csrf_token": csrf_of(nxt.text), "next": f"/c/{CAMPAIGN}/run"})
    assert r.headers["location"] == f"/c/{CAMPAIGN}/run"
    assert a.get(r.headers["location"]).status_code == 200
    assert a.get(f"/c/{CAMPAIGN}/reports").status_code == 200
    web.store.end_sessions("otto")
    r = a.get(f"/c/{CAMPAIGN}/reports")  # a GET still returns to itself
    assert r.headers["location"] == f"/login?next=/c/{CAMPAIGN}/reports"


# -- NUL characters -----------------------------------------------------------------------------
def test_a_nul_in_a_field_or_parameter_is_a_400_on_both_backends(web) -> None:
    anon = web.client()
    token = csrf_of(anon.get("/login").text)
    r = anon.post("/login", data={"username": "ada\x00", "password": "x" * 12,
                                  "csrf_token": token})
    assert r.status_code == 401 and "username: holds a NUL character" in r.json()["detail"]
    v = web.client()
    login(v, "vera")
    for query in ("source=%00", "status=a%00", "limit=5&x%00=1"):
        r = v.get(f"/api/campaigns/{CAMPAIGN}/contacts?{query}")
        assert r.status_code == 400 and "holds a NUL character (\\x00)" in r.json()["detail"]
    o = web.client()
    token = login(o, "otto")
    r = o.post(f"/c/{CAMPAIGN}/contacts/upload",
               data={"source": "a\x00b", "basis": "member_file", "csrf_token": token},
               files={"file": ("a.csv", b"number\n+33199000011\n")})
    assert r.status_code == 400 and r.json()["detail"].startswith("source: holds a NUL")
    assert web.store.lists_of(CAMPAIGN) == []
    r = v.get(f"/api/campaigns/{CAMPAIGN}/contacts?source=adherents")
    assert r.status_code == 200  # the ordinary query still answers
