"""The console's pages (French, with an English switch), rendered on the server from the same
service functions as the API; the overview then updates itself from the API's events. Every
POST form carries the session's csrf_token, checked here once the user is known, before
anything is done."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ivr.errors import ComplianceError, IvrError
from ivr.web import display, i18n, records, service
from ivr.web import prompts as prompts_mod
from ivr.web.api import dropped, prompts_elsewhere
from ivr.web.auth import (LoginBusy, NotLoggedIn, authenticate, check_password, client_of,
                          login_failed_detail, login_fields_ok, now, open_session, require)
from ivr.web.chart import overview_chart
from ivr.web.page_access import check_csrf as _check_csrf, open_form as _form, open_page as _page
from ivr.web.render import (error_page as _error_page, flash_text as _t, lang as _lang,
                            refused as _no, render as _render)
from ivr.web.results import back as _back, keep_rejects, page_route, rejects_download
from ivr.web.scope import console_campaign_seen, home_campaign, preflight_seen

BASES = ("consent", "member_file", "rented_file")
SHOWN_REJECTS = 1000  # rejected lines listed on a page; the CSV download has them all
# A page's 403/404 is a page (results.page_route). A campaign's name may hold a '/' (the
# config takes any): {campaign:path} takes it whole.
router = APIRouter(include_in_schema=False, route_class=page_route(_error_page))


def _safe_next(target: str | None, default: str) -> str:
    # Only a path of this site: never an open redirect to another host.
    return target if target and target.startswith("/") and not target.startswith("//") \
        else default


# -- login, logout, language ----------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    return _render(request, "login.html", {"next": _safe_next(next, "/"), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, username: str = Form(""), password: str = Form(""),
          csrf_token: str = Form(""), next: str = Form("/")) -> Response:
    _check_csrf(request, csrf_token)
    limiter, client = request.app.state.limiter, client_of(request)
    ctx = {"next": _safe_next(next, "/"), "username": username}
    if not login_fields_ok(username, password):  # absurdly long: refused, nothing kept
        return _render(request, "login.html", {**ctx, "username": "", "error": "login_failed"},
                       400)
    reserved = limiter.reserve(username, client)  # counted as failed until proven right
    if reserved is None:
        return _render(request, "login.html", {**ctx, "error": "login_limited"}, 429)
    store = request.app.state.stores.get()
    try:
        row = check_password(store, username, password)
    except LoginBusy:  # a flood of logins: this one was not tried, so not counted
        limiter.forget(username, client, reserved)
        return _render(request, "login.html", {**ctx, "error": "login_limited"}, 429)
    if row is None:
        store.audit("login_failed", None, login_failed_detail(store, username, client), now())
        return _render(request, "login.html", {**ctx, "error": "login_failed"}, 401)
    limiter.succeeded(username, client, reserved)
    open_session(request, row)
    store.audit("login", None, {"client": client}, now(), actor=row["name"])
    return RedirectResponse(ctx["next"], status_code=303)


@router.get("/logout", response_class=HTMLResponse)
def logout_form(request: Request) -> Response:
    """The button only: another site on this host must not end sessions mid-run."""
    return _render(request, "logout.html", {"user": None, "campaign": None})


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    """Ends every session of the user, here and in any copy of the cookie (a shared computer,
    a cookie stolen before): the user's session epoch moves on. With the page's csrf_token,
    like every form (once logged out: the login, nothing left to end)."""
    store = request.app.state.stores.get()
    user = authenticate(request, store)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    _check_csrf(request, csrf_token)
    if user.via == "session":
        store.end_sessions(user.name)
        store.audit("logout", None, {}, now(), actor=user.name)
    lang = request.session.get("lang")
    request.session.clear()
    request.session["lang"] = lang
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{code}")
def set_lang(request: Request, code: str, next: str = "/") -> Response:
    request.session["lang"] = i18n.pick(code)
    return RedirectResponse(_safe_next(next, "/"), status_code=303)


@router.get("/api/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    """The API's documentation, from the OpenAPI document, public like it: no CDN and no
    inline script (FastAPI's Swagger page needs both; the CSP blocks it)."""
    from ivr.web import docs
    return _render(request, "api_docs.html", {"d": docs.api_docs(request.app),
                                               "L": docs.labels(_lang(request)),
                                               "user": None, "campaign": None,
                                               "section": "api-docs"})


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)  # none: browsers stop asking, logs stay clean


@router.get("/")
def home(request: Request, campaign: str = "") -> Response:
    """The current campaign's overview (the switcher's form passes another one): the
    console's own, or a user bound to other campaigns lands on the first of theirs."""
    user = require(authenticate(request, request.app.state.stores.get()), "view")
    campaign = campaign or home_campaign(request, user) or ""
    if not campaign:
        raise HTTPException(404, f"no campaign of yours in this store: user {user.name} is "
                            "bound to campaigns not here: ask an admin (`ivr users campaigns`)")
    return RedirectResponse(f"/c/{quote(campaign, safe='')}/overview", status_code=303)


# -- overview and run control ---------------------------------------------------------------------
@router.get("/c/{campaign:path}/overview", response_class=HTMLResponse)
def overview_page(request: Request, campaign: str) -> Response:
    _, _, ctx = _page(request, campaign)
    data, lang = request.app.state.overviews.get(campaign), _lang(request)
    chart = overview_chart(data, request.app.state.cfg.schedule.timezone, lang)
    return _render(request, "overview.html", {**ctx, "section": "overview", "o": data,
                                              "states": i18n.states(lang), "chart": chart,
                                              "outcome_words": i18n.outcomes(lang),
                                              "eta": service.eta_text(data["eta_s"])})


def _control_shown(row: Any) -> dict[str, Any] | None:
    """The run_control row with no desired state while none was written (service.desired_set)."""
    return {**row, "desired": service.desired_set(row)} if row else None


@router.get("/c/{campaign:path}/run", response_class=HTMLResponse)
def run_page(request: Request, campaign: str) -> Response:
    user, store, ctx = _page(request, campaign)
    cfg = request.app.state.cfg
    violations = preflight_seen(user, request.app.state.preflights.get(campaign))
    return _render(request, "run.html", {
        **ctx, "section": "run", "violations": violations,
        "control": _control_shown(store.run_control(campaign)), "dialer": cfg.dialer,
        "states": i18n.states(_lang(request)),  # the live script's words too (console.js)
        "o": request.app.state.overviews.get(campaign)})


@router.post("/c/{campaign:path}/run/control")
def run_control(request: Request, campaign: str, action: str = Form(...),
                csrf_token: str = Form("")) -> Response:
    user, store, _ = _form(request, campaign, "control", csrf_token)
    to = f"/c/{quote(campaign, safe='')}/run"
    try:
        row = service.control(store, campaign, action, user.name, now())
    except (ValueError, IvrError) as exc:
        return _back(request, to, _no(request, exc), "error")
    request.app.state.overviews.drop(campaign)
    return _back(request, to, i18n.control_done(_lang(request), action, row["desired"]))


@router.post("/c/{campaign:path}/run/pacing")
def run_pacing(request: Request, campaign: str, max_concurrent: str = Form(""),
               calls_per_second: str = Form(""), csrf_token: str = Form("")) -> Response:
    user, store, _ = _form(request, campaign, "control", csrf_token)
    to = f"/c/{quote(campaign, safe='')}/run"
    try:
        row = service.pacing(request.app.state.cfg, store, campaign, max_concurrent,
                             calls_per_second, user.name, now())
    except (ValueError, IvrError) as exc:
        return _back(request, to, _no(request, exc), "error")
    request.app.state.overviews.drop(campaign)  # the overview's cap: the new one at once
    given = {"max_concurrent": max_concurrent, "calls_per_second": calls_per_second}
    return _back(request, to, i18n.pacing_saved(_lang(request), given, row))


# -- contacts -------------------------------------------------------------------------------------
@router.get("/c/{campaign:path}/contacts", response_class=HTMLResponse)
def contacts_page(request: Request, campaign: str, offset: int = 0) -> Response:
    _, store, ctx = _page(request, campaign)
    return _contacts(request, store, ctx, campaign, offset, None, None)


def _contacts(request: Request, store: Any, ctx: dict[str, Any], campaign: str, offset: int,
              result: dict[str, Any] | None, error: str | None, status: int = 200) -> Response:
    view = records.contacts_view(store, campaign, request.app.state.lists.get(campaign),
                                 offset=offset)
    return _render(request, "contacts.html", {**ctx, "section": "contacts", "v": view,
                                              "result": result, "error": error,
                                              "bases": BASES}, status)


@router.post("/c/{campaign:path}/contacts/upload", response_class=HTMLResponse)
def contacts_upload(request: Request, campaign: str, file: UploadFile = File(...),
                    source: str = Form(""), basis: str = Form(""), acquired_on: str = Form(""),
                    csrf_token: str = Form("")) -> Response:
    _, store, ctx = _form(request, campaign, "contacts", csrf_token)
    result, error = None, ""
    try:
        result = records.upload_contacts(request.app.state.cfg, store, campaign,
                                         file.file.read(), file.filename or "upload.csv",
                                         source=source, basis=basis, acquired_on=acquired_on,
                                         now=now())
    except records.PartialUpload as exc:  # the error, and what the lines before it gave
        result, error = exc.result, str(exc)
    except (ValueError, IvrError) as exc:
        error = str(exc)
    finally:
        dropped(request, campaign)
    if result is not None:
        result["rejects_id"] = keep_rejects(request, "contacts", campaign,
                                            result["rejected"])
    # French words for a file refused whole; else the form's fields, not CLI flags
    # (an unknown one in French behind the note that it is English, as every page says it)
    error = display.known(_lang(request), error) or display.refusal(
        _lang(request), i18n.form_words(_lang(request), error)) if error else error
    return _contacts(request, store, ctx, campaign, 0, result, error, 400 if error else 200)


@router.get("/c/{campaign:path}/contacts/rejects/{rid}.csv")
def contacts_rejects(request: Request, campaign: str, rid: str) -> Response:
    _page(request, campaign, "contacts")
    return rejects_download(request, "contacts", campaign, rid, "upload the file again")


# -- prompts --------------------------------------------------------------------------------------
def _prompts(request: Request, ctx: dict[str, Any], elsewhere: str | None) -> Response:
    """The console's own prompts, or for another campaign (whose prompts are its own config's)
    the line saying where to see them, 409, and no form: nothing here may change them."""
    if elsewhere:
        own = request.app.state.cfg.campaign.name if console_campaign_seen(request) else None
        return _render(request, "prompts.html", {**ctx, "section": "prompts", "v": None,
                                                  "elsewhere": elsewhere, "own": own}, 409)
    view = prompts_mod.prompts_view(request.app.state.cfg)
    return _render(request, "prompts.html", {**ctx, "section": "prompts", "v": view})


@router.get("/c/{campaign:path}/prompts", response_class=HTMLResponse)
def prompts_page(request: Request, campaign: str) -> Response:
    _, _, ctx = _page(request, campaign)
    return _prompts(request, ctx, prompts_elsewhere(request, campaign))


@router.post("/c/{campaign:path}/prompts/{key}/recording")
def prompts_recording(request: Request, campaign: str, key: str,
                      file: UploadFile = File(...), csrf_token: str = Form("")) -> Response:
    _, store, ctx = _form(request, campaign, "prompts", csrf_token)
    elsewhere = prompts_elsewhere(request, campaign)
    if elsewhere:
        return _prompts(request, ctx, elsewhere)
    to = f"/c/{quote(campaign, safe='')}/prompts"
    try:
        res = prompts_mod.upload_recording(request.app.state.cfg, key, file.file.read(),
                                           file.filename or "")
    except (ValueError, IvrError) as exc:
        return _back(request, to, _no(request, exc), "error")
    store.audit("prompt_recording", None, {"campaign": campaign, "prompt": key,
                                           "file": res["saved"]}, now())
    request.app.state.preflights.drop_all()  # the build is now stale: say so at once
    return _back(request, to, i18n.recording_saved(_lang(request), res))  # API: its `note`


@router.post("/c/{campaign:path}/prompts/rebuild")
def prompts_rebuild(request: Request, campaign: str, csrf_token: str = Form("")) -> Response:
    _, store, ctx = _form(request, campaign, "prompts", csrf_token)
    elsewhere = prompts_elsewhere(request, campaign)
    if elsewhere:
        return _prompts(request, ctx, elsewhere)
    to = f"/c/{quote(campaign, safe='')}/prompts"
    try:
        res = prompts_mod.rebuild(request.app.state.cfg)
    except ComplianceError as exc:  # the page's legal check lists the same in words
        lead = _t(request, "rebuild_refused")
        return _back(request, to, f"{lead} {exc}" if lead else _no(request, exc), "error")
    except IvrError as exc:
        return _back(request, to, _no(request, exc), "error")
    request.app.state.preflights.drop_all()
    store.audit("prompts_rebuilt", None, {"campaign": campaign, "prompts": res["prompts"]},
                now())
    return _back(request, to, i18n.rebuilt(_lang(request), res))


# -- reports --------------------------------------------------------------------------------------
@router.get("/c/{campaign:path}/reports", response_class=HTMLResponse)
def reports_page(request: Request, campaign: str) -> Response:
    _, _, ctx = _page(request, campaign)
    return _render(request, "reports.html", {**ctx, "section": "reports"})


@router.get("/c/{campaign:path}/reports/{name}")
def report_file(request: Request, campaign: str, name: str) -> Response:
    """The reports page's links: the API's file (an attachment: the page stays). Once the
    session ended, the login and then the reports page (a link to the API itself gave a bare
    failed download of its 401)."""
    here = f"/c/{quote(campaign, safe='')}/reports"
    try:
        _page(request, campaign)
    except NotLoggedIn:
        return RedirectResponse(f"/login?next={quote(here, safe='/')}", status_code=303)
    if name not in ("report.csv", "report.json"):
        raise HTTPException(404, f"{name}: no such report (report.csv, report.json)")
    return RedirectResponse(f"/api/campaigns/{quote(campaign, safe='')}/{name}", status_code=303)
