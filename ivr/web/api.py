"""The JSON API under /api/ (OpenAPI at /api/openapi.json, docs at /api/docs). Every route
authenticates (session cookie or bearer token), checks the role, and for a cookie-sent write
the X-CSRF-Token header. Routes are sync (FastAPI's thread pool): no store call on the loop."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import (FileResponse, JSONResponse, PlainTextResponse, Response,
                               StreamingResponse)
from pydantic import BaseModel, field_validator
from starlette.concurrency import run_in_threadpool

from ivr.errors import IvrError
from ivr.records import privacy
from ivr.records.erasure_notice import calls_to_tell, tell_in_background
from ivr.web import download, i18n, records, service
from ivr.web import prompts as prompts_mod
from ivr.web.segments import choose_coding, from_a_browser
from ivr.web.results import drop_rejects
from ivr.web.auth import NotLoggedIn, User, authenticate, check_api_csrf, now, require
from ivr.web.chart import overview_chart
from ivr.web.display import node_state, why_text
from ivr.web.scope import (asking, campaigns_seen, consent_seen, home_campaign, known,
                           console_campaign_seen, optout_seen, preflight_seen)

router = APIRouter(prefix="/api", tags=["console"])
EVENT_EVERY_S = 1.0  # live updates: one overview per second per open console, computed once


class ControlBody(BaseModel):
    action: Literal["start", "pause", "resume", "stop", "hard_stop"]


class PacingBody(BaseModel):
    max_concurrent: int | None = None
    calls_per_second: float | None = None

    @field_validator("max_concurrent", "calls_per_second", mode="before")
    @classmethod
    def _not_true_or_false(cls, value: Any) -> Any:
        """pydantic reads JSON's true as 1: a pace of one call at a time nobody asked for."""
        if isinstance(value, bool):
            raise ValueError("give a number, not true or false")
        return value


class OptoutBody(BaseModel):
    number: str
    via: Literal["post", "email", "phone", "sms"]


class EraseBody(BaseModel):
    confirm: str


def who(request: Request, action: str) -> tuple[User, Any]:
    """The caller (or 401/403) and this thread's store acting as them. Call it inside the
    route's own thread: the store must not cross threads."""
    from ivr.records.acting import Acting
    store = request.app.state.stores.get()
    user = asking(request, require(authenticate(request, store), action))
    check_api_csrf(request, user)
    return user, Acting(store, user.name)


def prompts_elsewhere(request: Request, campaign: str) -> str | None:
    """Why this console must not show or change `campaign`'s prompts, or None when they are
    its own: it holds only its config's prompts (the switcher changes the campaign's name, not
    the config), and a rebuild installs them where that campaign's run plays them at once."""
    own = request.app.state.cfg.campaign.name
    if campaign == own:
        return None
    held = f"campaign {own}'s" if console_campaign_seen(request) else "another campaign's"
    return (f"prompts: this console holds {held} prompts, not {campaign}'s: run "
            f"`ivr --config CONFIG web` with campaign {campaign}'s config to see or change them")


def own_prompts(request: Request, campaign: str) -> None:
    """409 unless `campaign` is the console's own (its prompts are another config's)."""
    known(request, campaign)
    elsewhere = prompts_elsewhere(request, campaign)
    if elsewhere:
        raise HTTPException(409, elsewhere)


def erase_warning(request: Request, store: Any, result: dict[str, Any]) -> str | None:
    """`ivr gdpr erase`'s warning, same words, when the erased number may stay on disk: the
    SQLite checkpoint found another process reading (the -wal file), or PostgreSQL's role may
    not rewrite the tables. (Else PostgreSQL under the console always answers False: its
    rewrite of the tables follows in the store's own thread.)"""
    if getattr(store, "reclaim_in_background", False) and not result.get("rewrite_refused"):
        return None
    return privacy.erase_warning(store, request.app.state.cfg.store.path, result,
                                 str(result.get("number", "")))


def dropped(request: Request, campaign: str) -> None:
    """After an upload: its list, counts and preflight are shown afresh."""
    for cache in ("lists", "overviews", "preflights", "campaign_names"):
        getattr(request.app.state, cache).drop("" if cache == "campaign_names" else campaign)


def opposed(request: Request) -> None:
    """After an opposition recorded in the console: every campaign's lists and counts show
    it at once (the list of a contact just opposed said `pending` for 5-16 s)."""
    for cache in ("lists", "overviews"):
        getattr(request.app.state, cache).drop_all()


def erase_number(request: Request, store: Any, number: str, confirm: str) -> dict[str, Any]:
    """The erasure of the API and of the rights page: erased or stopped half-way, nothing the
    console keeps in memory shows or holds the number again: the overviews (the last calls),
    the preflights (a fiction caller ID check names a number), report.json and report.csv's
    blocks, the live updates' texts, the uploads' rejected lines."""
    cfg = request.app.state.cfg
    try:  # the receiver's calls, read while the rows still hold the number (told after)
        told = calls_to_tell(cfg, store, privacy.normalise_number(number, cfg.default_region))
    except Exception:  # noqa: BLE001 - a number records.erase refuses, or the store away: the
        told = []      # erasure says its own one line
    try:
        result = records.erase(cfg, store, number, confirm, now())
    finally:
        state = request.app.state
        state.overviews.drop_all()
        state.preflights.drop_all()
        state.lists.drop_all()
        state.reports.clear()
        state.kept_csv.clear()
        state.event_texts.clear()
        drop_rejects(request)
    tell_in_background(cfg, request.app.state.stores.get, told)  # GDPR art. 19
    warning = erase_warning(request, store, result)
    return {**result, "warning": warning} if warning else result


@router.get("/campaigns")
def campaigns(request: Request) -> dict[str, Any]:
    """The campaigns the caller sees, and the one the console opens on (None: none of them)."""
    user, _ = who(request, "view")
    return {"default": home_campaign(request, user), "campaigns": campaigns_seen(request, user)}


@router.get("/campaigns/{campaign:path}/overview")
def overview(request: Request, campaign: str, lang: str = "en") -> dict[str, Any]:
    """The live overview (at most OVERVIEW_FRESH_S old; `chart_svg` included). `lang=fr`:
    `why_waiting` and the chart's titles in French, as a page shows them (in_words)."""
    who(request, "view")
    known(request, campaign)
    return in_words(request.app.state.overviews.get(campaign), lang,
                    request.app.state.cfg.schedule.timezone)


def in_words(data: dict[str, Any], lang: str, zone: str) -> dict[str, Any]:
    """The overview with what a page words (why nobody is called, the chart's bar titles) in
    `lang`; English, the API's own words, as it is (codes and times never change)."""
    if lang == "en" or lang not in i18n.LANGS:
        return data
    return {**data, "why_waiting": why_text(lang, data, zone),
            "chart_svg": overview_chart(data, zone, lang),
            "nodes": [{**n, "holding": node_state(lang, n.get("holding") or "")}
                      for n in data.get("nodes") or []]}


@router.get("/campaigns/{campaign:path}/events", response_class=StreamingResponse)
async def events(request: Request, campaign: str, lang: str = "en") -> StreamingResponse:
    """Server-sent events: the overview (plus `chart_svg`) every second while connected. The
    session or token is checked again before each event, in the same thread hop as the
    overview (one indexed read: ~0.1 ms on SQLite): after a logout, a disable, a revoke or a
    demotion no more voters' numbers are sent (every 30th event let ~30 s more through).
    `lang`: the page's language, as the overview's (in_words)."""
    lang = lang if lang in i18n.LANGS else "en"
    zone = request.app.state.cfg.schedule.timezone

    def check() -> None:
        who(request, "view")
        known(request, campaign)

    def checked_overview() -> Any:
        check()
        return request.app.state.overviews.get(campaign)
    await run_in_threadpool(check)

    async def stream() -> Any:
        while not await request.is_disconnected():
            try:
                data = await run_in_threadpool(checked_overview)
            except (NotLoggedIn, HTTPException):
                return  # the stream ends: the page's EventSource retries and gets a 401
            yield _event_text(request.app.state.event_texts, campaign, data, lang, zone)
            await asyncio.sleep(EVENT_EVERY_S)
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _event_text(kept: dict[tuple[str, str], tuple[Any, str]], campaign: str, data: Any,
                lang: str = "en", zone: str = "UTC") -> str:
    """The event for this overview, encoded once for every open stream of a language (50
    consoles: one json.dumps a second, not 50). The cache hands out the same object until it
    refreshes; holding it here keeps its identity from being reused."""
    hit = kept.get((campaign, lang))
    if hit is None or hit[0] is not data:
        shown = in_words(data, lang, zone)
        hit = kept[(campaign, lang)] = (data,
                                        f"data: {json.dumps(shown, ensure_ascii=False)}\n\n")
    return hit[1]


@router.post("/campaigns/{campaign:path}/control")
def control(request: Request, campaign: str, body: ControlBody) -> dict[str, Any]:
    user, store = who(request, "control")
    known(request, campaign)
    row = service.control(store, campaign, body.action, user.name, now())
    request.app.state.overviews.drop(campaign)
    return row


@router.post("/campaigns/{campaign:path}/pacing")
def pacing(request: Request, campaign: str, body: PacingBody) -> dict[str, Any]:
    user, store = who(request, "control")
    known(request, campaign)
    row = service.pacing(request.app.state.cfg, store, campaign, body.max_concurrent,
                         body.calls_per_second, user.name, now())
    request.app.state.overviews.drop(campaign)  # its cap is the new one at once, as control's
    return row


@router.get("/campaigns/{campaign:path}/preflight")
def preflight(request: Request, campaign: str) -> dict[str, Any]:
    user, _ = who(request, "view")
    known(request, campaign)
    violations = preflight_seen(user, request.app.state.preflights.get(campaign))
    return {"campaign": campaign, "violations": violations,
            "errors": sum(v["severity"] == "error" for v in violations)}


@router.post("/campaigns/{campaign:path}/contacts", response_model=None)
def upload_contacts(request: Request, campaign: str, file: UploadFile = File(...),
                    source: str = Form(...), basis: str = Form(""),
                    acquired_on: str = Form("")) -> dict[str, Any] | JSONResponse:
    _, store = who(request, "contacts")
    known(request, campaign)
    try:
        return records.upload_contacts(request.app.state.cfg, store, campaign,
                                       file.file.read(), file.filename or "upload.csv",
                                       source=source, basis=basis, acquired_on=acquired_on,
                                       now=now())
    except records.PartialUpload as exc:  # still a 400, with what the lines before it gave
        return JSONResponse({"detail": records.api_fields(str(exc)), **exc.result},
                            status_code=400)
    except (ValueError, IvrError) as exc:
        return JSONResponse({"detail": records.api_fields(str(exc))}, status_code=400)
    finally:
        dropped(request, campaign)


@router.get("/campaigns/{campaign:path}/contacts")
def contacts(request: Request, campaign: str, source: str | None = None,
             status: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    _, store = who(request, "view")
    known(request, campaign)
    return records.contacts_view(store, campaign, request.app.state.lists.get(campaign),
                                 source=source, status=status, limit=limit, offset=offset)


@router.get("/campaigns/{campaign:path}/report.csv", response_class=PlainTextResponse)
async def report_csv(request: Request, campaign: str) -> Response:
    """Streamed: the first rows leave while the store still reads the others (one export
    thread with its own store reads them; a failure mid-way breaks the download off). The
    blocks kept from the last download (cache.KeptBlocks) are reused where the store finds
    them unchanged: after a commit only the changed blocks are rendered again. zstd or gzip
    when the client accepts it (browsers do): the kept blocks' segments, see download.py."""
    user, _ = await run_in_threadpool(who, request, "view")
    await run_in_threadpool(_csv_asked, request, user, campaign)
    coding = choose_coding(",".join(request.headers.getlist("accept-encoding")),
                           from_a_browser(request.headers))
    return download.report_csv(request.app.state, campaign, coding)


def _csv_asked(request: Request, user: User, campaign: str) -> None:
    """A known campaign, and a row in the audit with the user: report.csv holds every number
    the campaign called (this thread's own store: a store does not cross threads)."""
    known(request, campaign)
    request.app.state.stores.get().audit("report_downloaded", None,
                                         {"campaign": campaign, "report": "report.csv"}, now(),
                                         actor=user.name)


@router.get("/campaigns/{campaign:path}/report.json")
def report_json(request: Request, campaign: str) -> Response:
    _, store = who(request, "view")
    known(request, campaign)  # else every name typed in the URL would be kept
    # Kept while nothing is committed to the store (cache.Marked): the same bytes as computed.
    body = request.app.state.reports.get(campaign, lambda: service.report_json(store, campaign))
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="report.json"'})


@router.get("/campaigns/{campaign:path}/prompts")
def prompts(request: Request, campaign: str) -> dict[str, Any]:
    """The console's own campaign's prompts; 409 for another campaign (its config's)."""
    who(request, "view")
    own_prompts(request, campaign)
    return prompts_mod.prompts_view(request.app.state.cfg)


@router.get("/campaigns/{campaign:path}/prompts/{key}/audio", response_class=FileResponse)
def prompt_audio(request: Request, campaign: str, key: str) -> FileResponse:
    who(request, "view")
    own_prompts(request, campaign)
    try:
        path = prompts_mod.audio_path(request.app.state.cfg, key)
    except KeyError:
        raise HTTPException(404, f"prompt {key!r} is not built: rebuild the prompts") from None
    return FileResponse(path, media_type="audio/wav")


@router.post("/campaigns/{campaign:path}/prompts/{key}/recording")
def prompt_recording(request: Request, campaign: str, key: str,
                     file: UploadFile = File(...)) -> dict[str, Any]:
    user, store = who(request, "prompts")
    own_prompts(request, campaign)
    result = prompts_mod.upload_recording(request.app.state.cfg, key, file.file.read(),
                                          file.filename or "")
    store.audit("prompt_recording", None, {"campaign": campaign, "prompt": key,
                                           "file": result["saved"]}, now())
    request.app.state.preflights.drop_all()  # the build is now stale: say so at once
    return result


@router.post("/campaigns/{campaign:path}/prompts/rebuild")
def prompts_rebuild(request: Request, campaign: str) -> dict[str, Any]:
    _, store = who(request, "prompts")
    own_prompts(request, campaign)
    result = prompts_mod.rebuild(request.app.state.cfg)
    request.app.state.preflights.drop_all()
    store.audit("prompts_rebuilt", None, {"campaign": campaign, "prompts": result["prompts"]},
                now())
    return result


@router.post("/optouts")
def optout_add(request: Request, body: OptoutBody) -> dict[str, Any]:
    user, store = who(request, "optout")
    try:
        return records.optout_add(request.app.state.cfg, store, body.number, body.via,
                                  user.name, now())
    finally:
        opposed(request)


@router.post("/optouts/import")
def optout_import(request: Request, file: UploadFile = File(...),
                  via: str = Form("")) -> dict[str, Any]:
    user, store = who(request, "optout")
    try:
        return records.optout_import(request.app.state.cfg, store, file.file.read(),
                                     file.filename or "optouts.csv", via, user.name, now())
    except records.ImportStopped as exc:  # the numbers before the faulty line stay listed
        return JSONResponse({"detail": str(exc), "added": exc.added}, status_code=400)
    finally:
        opposed(request)


@router.get("/optouts/{number}")
def optout_lookup(request: Request, number: str) -> dict[str, Any]:
    user, store = who(request, "view")
    found = records.optout_lookup(request.app.state.cfg, store, number)
    store.audit("optout_viewed", found["number"], {}, now())  # who looked at whom, as consent
    return optout_seen(user, found)


@router.get("/numbers/{number}/consent")
def consent(request: Request, number: str) -> dict[str, Any]:
    user, store = who(request, "view")
    found = records.consent(request.app.state.cfg, store, number)
    store.audit("consent_viewed", found["number"], {}, now())  # who looked at whom
    return consent_seen(user, found)


@router.get("/numbers/{number}/export")
def export(request: Request, number: str) -> Response:
    _, store = who(request, "gdpr")
    data = records.export(request.app.state.cfg, store, number, now())
    return Response(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                    media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="gdpr-export.json"'})


@router.post("/numbers/{number}/erase")
def erase(request: Request, number: str, body: EraseBody) -> dict[str, Any]:
    _, store = who(request, "gdpr")
    return erase_number(request, store, number, body.confirm)


@router.get("/audit")
def audit_log(request: Request, limit: int = 100) -> dict[str, Any]:
    _, store = who(request, "users")
    return {"audit": store.audit_log(max(1, min(limit, 1000)))}


@router.get("/users")
def users(request: Request) -> dict[str, Any]:
    """Every user; `campaigns`: the only ones it sees, or null for every campaign."""
    _, store = who(request, "users")
    return {"users": store.users()}
