"""What the console refuses before a route reads what was sent. An upload from nobody (no valid
session or bearer token) or from a role that may not make it, and a body over its route's cap
(by its Content-Length, or once a chunked body grows past it): Starlette's form parser used to
spool a whole 300 MiB body to disk before the route answered 401, and the routes checked their
caps only once the file was in memory. A NUL character in a query parameter or a form field:
PostgreSQL's text columns refuse it (a 500) where SQLite kept it; both now answer 400. And the
answer to a request from nobody, shared with the app's NotLoggedIn handler."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ivr.web import prompts, records
from ivr.web.auth import SAFE_METHODS, NotLoggedIn, authenticate, require
from ivr.web.results import detail_key
from ivr.web.scope import not_yours

MIB = 1024 * 1024
FORM_SLACK_BYTES = 64 * 1024  # an upload's multipart framing and its form's other fields
OTHER_MAX_BYTES = 1 * MIB  # any other body: a login, a form's fields, an API call's JSON
NOT_LOGGED_IN = ("not logged in: log in, or send Authorization: Bearer <token from "
                 "`ivr users token`>")


@dataclass(frozen=True)
class Upload:
    path: re.Pattern[str]
    cap: Callable[[], int]  # the file's cap the route itself checks, read at each request
    action: str  # the right the route requires (web_users)
    what: str
    fix: str

    def refusal(self) -> str:
        return (f"file: more than {self.cap() // MIB} MiB, the most {self.what} may be: "
                f"{self.fix}")


def _contacts_cap() -> int:
    return records.MAX_UPLOAD_BYTES


def _recording_cap() -> int:
    return prompts.MAX_RECORDING_BYTES


# A campaign's name may hold a '/' (the routes take {campaign:path}): `.+`, not `[^/]+`. The
# group is the campaign: a user bound to others is refused before the body is read too.
UPLOADS = (
    Upload(re.compile(r"/api/campaigns/(.+)/contacts"), _contacts_cap, "contacts",
           "a contact list", "split the list"),
    Upload(re.compile(r"/c/(.+)/contacts/upload"), _contacts_cap, "contacts",
           "a contact list", "split the list"),
    Upload(re.compile(r"/api/optouts/import"), _contacts_cap, "optout",
           "an opposition list", "split the list"),
    Upload(re.compile(r"/c/(.+)/rights/optout-import"), _contacts_cap, "optout",
           "an opposition list", "split the list"),
    Upload(re.compile(r"/api/campaigns/(.+)/prompts/[^/]+/recording"), _recording_cap,
           "prompts", "a recording", "shorten it or send it as mp3"),
    Upload(re.compile(r"/c/(.+)/prompts/[^/]+/recording"), _recording_cap, "prompts",
           "a recording", "shorten it or send it as mp3"),
)
# The pages' POST-only URLs, each after its campaign and section: anchored on these tails, a
# '/' in the campaign or a prompt named like a section ('run') cannot move the split (a greedy
# `/c/(.+)/(run|...)(/.*)?` read /c/demo/prompts/run/recording as campaign 'demo/prompts').
FORMS = (("run", r"control|pacing"), ("contacts", r"upload"),
         ("prompts", r"[^/]+/recording|rebuild"), ("rights", r"optout|optout-import|erase"))
SECTION_FORMS = tuple(re.compile(rf"/c/(.+)/({section})/(?:{tails})") for section, tails in FORMS)
# Any other URL under a section (a form added later): the longest campaign name that fits.
SECTION = re.compile(r"/c/(.+)/(overview|run|contacts|prompts|rights|reports)(/.*)?")


class _TooLarge(HTTPException):
    """Raised from the body's reading: FastAPI passes an HTTPException on as it is (413)."""


def upload_of(scope: Scope) -> Upload | None:
    if scope["method"] in SAFE_METHODS:
        return None
    return next((u for u in UPLOADS if u.path.fullmatch(scope["path"])), None)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it before us anyway
    return None


def _check_user(request: Request, upload: Upload) -> None:
    """The app's own checks (auth.authenticate, auth.require, the campaigns a bound user
    sees), in a pool thread: store reads never run on the event loop."""
    user = require(authenticate(request, request.app.state.stores.get()), upload.action)
    found = upload.path.fullmatch(request.scope["path"])  # as upload_of matched it
    if found and found.groups() and not user.sees(found.group(1)):
        raise not_yours(found.group(1))


class Gate:
    """Pure ASGI (not BaseHTTPMiddleware): the events and report.csv stream through as they
    are. Installed inside SessionMiddleware, which has decoded the cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = upload_of(scope)
        cap = upload.cap() + FORM_SLACK_BYTES if upload else OTHER_MAX_BYTES
        refused = await self._refused(scope, upload, cap)
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self._limited(scope, receive, send, upload, cap)

    async def _refused(self, scope: Scope, upload: Upload | None, cap: int) -> Response | None:
        request = Request(scope)
        if upload is not None:
            try:
                await run_in_threadpool(_check_user, request, upload)
            except NotLoggedIn:
                return login_answer(request)
            except HTTPException as exc:
                return refusal(request, exc.status_code, str(exc.detail))
        length = _content_length(scope)
        if length is not None and length > cap:
            return refusal(request, 413, _too_large(upload))
        return None

    async def _limited(self, scope: Scope, receive: Receive, send: Send,
                       upload: Upload | None, cap: int) -> None:
        """The body passed on while it stays under `cap` (a chunked one has no length)."""
        got, started = 0, False

        async def receiving() -> Message:
            nonlocal got
            message = await receive()
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                if got > cap:
                    raise _TooLarge(413, _too_large(upload))
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receiving, sending)
        except _TooLarge as exc:  # read outside FastAPI's handling (none today): same answer
            if started:
                raise
            await refusal(Request(scope), 413, str(exc.detail))(scope, receive, send)


def _too_large(upload: Upload | None) -> str:
    if upload is not None:
        return upload.refusal()
    return (f"request body: more than {OTHER_MAX_BYTES // MIB} MiB, the most a form or an API "
            "call takes (files go to the upload routes)")


def refusal(request: Request, status: int, detail: str) -> Response:
    """The API: JSON. A page: the console's error page in the operator's language, as the
    app's own refusals (app.state.error_page: pages._error_page)."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": detail}, status)
    return request.app.state.error_page(request, status, detail, detail_key(status, detail))


# -- a request from nobody ----------------------------------------------------------------------
def login_answer(request: Request) -> Response:
    """The API: 401 saying how to authenticate. A page: the login, which then returns to
    back_to(request)."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": NOT_LOGGED_IN}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return RedirectResponse(f"/login?next={quote(back_to(request), safe='/')}", status_code=303)


def back_to(request: Request) -> str:
    """Where the login returns: the page asked for; for a form's POST (its URL takes no GET:
    after the login the browser would get a 405 and the action would be lost), the section's
    page (/c/<campaign>/<section>), as the form's page was when it is the Referer (its query
    too: the number looked up), else the same-origin Referer, else the home page."""
    path = request.url.path
    if request.method in SAFE_METHODS:
        return path
    section = section_of(path)
    referer = _same_origin_referer(request)
    if section is None:
        return referer or "/"
    # The same page however its campaign's '/' is written (%2F in the console's links).
    if referer and unquote(urlsplit(referer).path) == unquote(section):
        return referer
    return section


def section_of(path: str) -> str | None:
    """/c/<campaign, quoted>/<section> of a page's form URL (or of any URL in a section)."""
    found = next((m for m in (p.fullmatch(path) for p in (*SECTION_FORMS, SECTION)) if m), None)
    return f"/c/{quote(found[1], safe='')}/{found[2]}" if found else None


def _same_origin_referer(request: Request) -> str | None:
    """The Referer's path and query when it is a page of this host (never the login)."""
    ref = urlsplit(request.headers.get("referer", ""))
    host = request.headers.get("host")
    if not host or ref.netloc != host or not ref.path.startswith("/") \
            or ref.path.startswith("//") or ref.path.startswith("/login"):
        return None
    return ref.path + (f"?{ref.query}" if ref.query else "")


# -- NUL characters -----------------------------------------------------------------------------
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def no_nul(request: Request) -> None:
    """An app-wide dependency: runs after FastAPI parsed the form (request.form() is then the
    same, kept FormData) and before the route touches the store. 401 for a login (no user's
    name holds one), 400 elsewhere."""
    fields = list(request.query_params.multi_items())
    if request.headers.get("content-type", "").split(";")[0].strip().lower() in FORM_TYPES:
        fields += [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
    bad = next((k for k, v in fields if "\x00" in k or "\x00" in v), None)
    if bad is not None:
        login = request.method == "POST" and request.url.path == "/login"
        raise HTTPException(401 if login else 400,
                            f"{bad.replace(chr(0), '?')}: holds a NUL character (\\x00), which "
                            "no field takes: remove it")
