"""What a page hands back after an action: a one-line flash for the next page, cut to fit the
session cookie, the rejected lines of an upload, kept a while for their CSV download, and a
refusal (403, 404) as a page in the operator's language rather than the API's JSON."""
from __future__ import annotations

import json
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from ivr.web import records

KEPT_REJECTS = 20  # uploads whose rejected lines stay downloadable (memory only)
# ... for this long at most: a number erased outside the console (`ivr gdpr erase`, which
# the console does not hear of) stayed downloadable in them until 20 more uploads or a restart
KEPT_REJECTS_S = 600.0
_clock = time.monotonic
# The flash rides in the session cookie, base64'd: past ~4096 bytes the browser drops the
# cookie and the operator sees no message at all. Its JSON text is kept under this.
FLASH_MAX_JSON = 1500
_kept_lock = threading.Lock()  # app.state.rejects: written from the pool's threads


def back(request: Request, to: str, text: str, kind: str = "ok") -> RedirectResponse:
    """To `to`, which shows `text` once (kind: ok, warning or error)."""
    request.session["flash"] = {"kind": kind, "text": fits(text)}
    return RedirectResponse(to, status_code=303)


def fits(text: str) -> str:
    """The flash cut to FLASH_MAX_JSON bytes of cookie JSON (a reason may quote what was
    typed or uploaded, of any length); a result of any length is rendered as a page instead."""
    if len(json.dumps(text)) <= FLASH_MAX_JSON:
        return text
    while len(json.dumps(text)) > FLASH_MAX_JSON - 16:
        text = text[:len(text) * 3 // 4]
    return text + " […]"


def keep_rejects(request: Request, kind: str, campaign: str,
                 rejected: list[dict[str, Any]]) -> str:
    """An id for downloading these rejected lines as CSV (compressed: a garbage file's
    rejects can be many); the last KEPT_REJECTS uploads are kept, in this process only.
    They are the campaign's: its pages alone hand them out, whoever holds the id."""
    rid = secrets.token_urlsafe(12)
    blob = zlib.compress(records.rejects_csv(rejected).encode("utf-8"))
    kept = request.app.state.rejects
    with _kept_lock:
        kept[rid] = (kind, campaign, blob, _clock())
        while len(kept) > KEPT_REJECTS:
            kept.pop(next(iter(kept)))
    return rid


def drop_rejects(request: Request) -> None:
    """Every kept reject file goes (after an erasure: a reject quotes the line as written, a
    number in any form, so none is searched: the upload is done again if its rejects are
    still wanted)."""
    with _kept_lock:
        request.app.state.rejects.clear()


def rejects_download(request: Request, kind: str, campaign: str, rid: str,
                     again: str) -> Response:
    """The CSV kept under `rid` for this kind of upload to `campaign`; 404 once dropped, or
    under another campaign's pages (`again`: the fix)."""
    with _kept_lock:
        hit = request.app.state.rejects.get(rid)
        if hit is not None and _clock() - hit[3] > KEPT_REJECTS_S:
            request.app.state.rejects.pop(rid, None)
            hit = None
    if hit is None or hit[:2] != (kind, campaign):
        raise HTTPException(404, f"these rejects are no longer kept: {again}")
    return Response(zlib.decompress(hit[2]), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="rejects.csv"'})


PAGE_ERRORS = (403, 404)  # refusals a page answers as a page; the rest keep the app's JSON
# The English details the routes raise, and the words the operator reads instead (the detail
# itself is shown under them, for whoever fixes it).
_KNOWN_DETAILS = (("missing or wrong csrf_token", "csrf_failed"), ("role ", "forbidden"),
                  ("no campaign of yours", "none_yours"), ("no campaign ", "no_campaign"),
                  ("spans every campaign", "spans_all"),
                  ("these rejects are no longer kept", "rejects_gone"))
ErrorPage = Callable[[Request, int, str, str | None], Response]


def detail_key(status: int, detail: str) -> str | None:
    """The i18n key of the words shown over an English detail (None: the detail alone)."""
    if status == 413:
        return "too_large"
    return next((k for start, k in _KNOWN_DETAILS if detail.startswith(start)), None)


def page_route(render: ErrorPage) -> type[APIRoute]:
    """A route class for the pages' router: a 403 or 404 a page route raises (role, csrf_token,
    unknown campaign, rejects no longer kept) is rendered by `render(request, status, detail,
    i18n key or None)` as a short page, in French or English; the API keeps its JSON."""
    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except HTTPException as exc:
                    if exc.status_code not in PAGE_ERRORS:
                        raise
                    detail = str(exc.detail)
                    return render(request, exc.status_code, detail,
                                  detail_key(exc.status_code, detail))
            return handle
    return PageRoute
