"""The console's opposition and rights page: look a number up (its consent and opposition), add
an opposition or import a list of them, export a person's data, erase it. Every refusal comes
back on the page by its field, as typed."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from ivr.errors import IvrError
from ivr.records.privacy import OPTOUT_CHANNELS
from ivr.web import display, records
from ivr.web.api import erase_number, opposed
from ivr.web.auth import now
from ivr.web.page_access import open_form as _form, open_page as _page
from ivr.web.pages import SHOWN_REJECTS  # as the contacts upload's page
from ivr.web.render import (error_page as _error_page, flash_text as _t, lang as _lang,
                            refused as _no, render as _render)
from ivr.web.scope import consent_seen, optout_seen
from ivr.web.results import back as _back, keep_rejects, page_route, rejects_download

router = APIRouter(include_in_schema=False, route_class=page_route(_error_page))


@router.get("/c/{campaign:path}/rights", response_class=HTMLResponse)
def rights_page(request: Request, campaign: str, number: str = "") -> Response:
    _, store, ctx = _page(request, campaign)
    return _rights_page(request, store, ctx, number=number)


def _rights_page(request: Request, store: Any, ctx: dict[str, Any], *, number: str = "",
                 imported: dict[str, Any] | None = None, import_error: str | None = None,
                 import_added: int = 0, optout: dict[str, str] | None = None,
                 status: int = 200) -> Response:
    """`optout`: the opposition form as it was sent and why it was refused (its `error`), so
    the error sits by its field and the number typed is not lost to a redirect."""
    cfg = request.app.state.cfg
    found, error = None, None
    if number:
        try:
            user = ctx["user"]
            found = {"optout": optout_seen(user, records.optout_lookup(cfg, store, number)),
                     **consent_seen(user, records.consent(cfg, store, number))}
            store.audit("consent_viewed", found["number"], {}, now())  # who looked at whom
        except IvrError as exc:
            error = _no(request, exc)
    return _render(request, "rights.html", {**ctx, "section": "rights", "number": number,
                                            "found": found, "error": error,
                                            "imported": imported, "import_error": import_error,
                                            "import_added": import_added,
                                            "optout": optout or {},
                                            "channels": OPTOUT_CHANNELS}, status)


def _rights(campaign: str, number: str = "") -> str:
    to = f"/c/{quote(campaign, safe='')}/rights"
    return f"{to}?number={quote(number, safe='')}" if number else to


@router.post("/c/{campaign:path}/rights/optout")
def rights_optout(request: Request, campaign: str, number: str = Form(""),
                  via: str = Form(""), csrf_token: str = Form("")) -> Response:
    user, store, ctx = _form(request, campaign, "optout", csrf_token)
    try:
        res = records.optout_add(request.app.state.cfg, store, number, via, user.name, now())
    except (ValueError, IvrError) as exc:  # the page again, the error by its field, as typed
        field = "number" if str(exc).startswith("number") else \
            "via" if via not in OPTOUT_CHANNELS else ""  # else the store's: no field is wrong
        return _rights_page(request, store, ctx, status=400, optout={
            "number": number, "via": via, "error": _no(request, exc), "field": field})
    opposed(request)
    said = _t(request, "flash_optout_added" if res["added"] else "flash_optout_already",
              number=res["number"])
    return _back(request, _rights(campaign, res["number"]), said)


@router.post("/c/{campaign:path}/rights/optout-import", response_class=HTMLResponse)
def rights_optout_import(request: Request, campaign: str, file: UploadFile = File(...),
                         via: str = Form(""), csrf_token: str = Form("")) -> Response:
    """The import's result as a page, like the contacts upload's: every rejected line is a
    person who may have objected and is not on the list, so none may go unseen (a flash in
    the cookie was cut, or dropped whole by the browser past 4096 bytes)."""
    user, store, ctx = _form(request, campaign, "optout", csrf_token)
    try:
        res = records.optout_import(request.app.state.cfg, store, file.file.read(),
                                    file.filename or "optouts.csv", via, user.name, now())
    except (ValueError, IvrError) as exc:
        opposed(request)  # the numbers before the faulty line are listed
        added = exc.added if isinstance(exc, records.ImportStopped) else 0
        return _rights_page(request, store, ctx, import_error=_no(request, exc), status=400,
                            import_added=added)
    opposed(request)
    rejected = res["rejected"]
    imported = {"added": res["added"], "rejected_total": len(rejected),
                "rejected": rejected[:SHOWN_REJECTS], "shown_max": SHOWN_REJECTS,
                "rejects_id": keep_rejects(request, "optouts", campaign, rejected)
                if rejected else None}
    return _rights_page(request, store, ctx, imported=imported)


@router.get("/c/{campaign:path}/rights/rejects/{rid}.csv")
def rights_rejects(request: Request, campaign: str, rid: str) -> Response:
    _page(request, campaign, "optout")
    return rejects_download(request, "optouts", campaign, rid, "import the file again")


@router.get("/c/{campaign:path}/rights/export")
def rights_export(request: Request, campaign: str, number: str) -> Response:
    _, store, _ = _page(request, campaign, "gdpr")
    data = records.export(request.app.state.cfg, store, number, now())
    return Response(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                    media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="gdpr-export.json"'})


@router.post("/c/{campaign:path}/rights/erase")
def rights_erase(request: Request, campaign: str, number: str = Form(""),
                 confirm: str = Form(""), csrf_token: str = Form("")) -> Response:
    _, store, _ = _form(request, campaign, "gdpr", csrf_token)
    try:
        res = erase_number(request, store, number, confirm)
    except (ValueError, IvrError) as exc:
        return _back(request, _rights(campaign, number), _no(request, exc), "error")
    if res.get("warning"):  # the number is still on disk: the operator must know
        why = display.refusal(_lang(request), res["warning"])
        return _back(request, _rights(campaign), _t(request, "flash_erase_incomplete",
                                                    number=res["number"], why=why), "warning")
    return _back(request, _rights(campaign), _t(request, "flash_erased", number=res["number"]))
