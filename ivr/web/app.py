"""The console's app factory: FastAPI with signed-cookie sessions, the JSON API (/api/, with
its OpenAPI document) and the pages. Routes are sync functions, so FastAPI runs them in its
thread pool and no store round trip ever runs on the event loop; each pool thread opens its
own store once (a SQLite connection is used by one thread at a time)."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from ivr.config import Config
from ivr.errors import IvrError, store_trouble
from ivr.records.acting import Acting
from ivr.store.base import StoreBackend
from ivr.web import gate
from ivr.web.auth import SESSION_MAX_AGE_S, LoginLimiter, NotLoggedIn, now
from ivr.web.cache import KeptBlocks, Marked, Refreshing
from ivr.web.results import ErrorPage
from ivr.web.service import PlanCache

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SECRET_ENV = "IVR_WEB_SECRET"
SECURE_ENV = "IVR_WEB_SECURE_COOKIE"  # "1" behind a TLS proxy: the cookie is sent over https only
OVERVIEW_FRESH_S = 1.0  # live: the events send one a second
# Never served older: a number erased outside the console (`ivr gdpr erase`) may show in
# an overview's last calls this long at most (the console's own erasure drops them all).
OVERVIEW_STALE_MAX_S = 5.0
PREFLIGHT_FRESH_S = 10.0  # reads every pending contact; a config change needs a restart anyway
LISTS_FRESH_S = 5.0  # lists per source and the campaign switcher; an upload drops them at once
WARM_WAIT_S = 30.0  # at start: serve without the overview if it takes longer than this
StoreFactory = Callable[[], StoreBackend]


class Stores:
    """One SQLite store per thread, opened on first use (a connection serves one thread at a
    time); a remote store (PostgreSQL: its own pool, transactions bound to the calling thread)
    is opened once and shared. A thread's store is closed once that thread has ended (anyio
    ends a pool thread idle for 10 s and starts another for the next request: kept until
    shutdown, each page load after a quiet spell left ~5 connections open, until "Too many
    open files"); every other store at shutdown."""

    def __init__(self, factory: StoreFactory) -> None:
        self.factory = factory
        self._local = threading.local()
        self._by_thread: dict[threading.Thread, Any] = {}
        self._others: list[Any] = []  # the marker's, remote ones: closed at shutdown
        self._shared: Any = None
        self._marker: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._shared is not None:
            return self._shared
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self.factory()
            ended: list[Any] = []
            with self._lock:
                if getattr(store, "remote", False):
                    self._others.append(store)
                    self._shared = store
                    # PostgreSQL's rewrite after an erasure (seconds): after the answer
                    store.reclaim_in_background = True
                else:
                    gone = [t for t in self._by_thread if not t.is_alive()]
                    ended = [self._by_thread.pop(t) for t in gone]
                    self._by_thread[threading.current_thread()] = store
            for old in ended:
                _close(old)  # check_same_thread=False: closable here, its thread is gone
        return store

    def open_count(self) -> int:
        """Stores open now, the marker's included (what the console holds in descriptors)."""
        with self._lock:
            return len(self._by_thread) + len(self._others)

    def marker(self) -> str:
        """The store's change marker, always from one and the same store: a SQLite one of its
        own that serves nothing else (markers of two connections do not compare)."""
        with self._lock:
            if self._marker is None:
                shared = self._shared
                self._marker = shared if shared is not None else self.factory()
                if shared is None:
                    self._others.append(self._marker)
            return str(self._marker.change_marker())

    def close(self) -> None:
        with self._lock:
            self._marker = None
            for store in [*self._by_thread.values(), *self._others]:
                _close(store)
            self._by_thread.clear()
            self._others.clear()
            self._shared = None


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    conn = getattr(getattr(store, "db", None), "conn", None)
    if callable(close):
        close()
    elif conn is not None:
        conn.close()


SECRET_MIN = 32  # characters: `openssl rand -hex 32` gives 64


def session_secret() -> str:
    """IVR_WEB_SECRET; a short one is refused: whoever guesses it forges an admin's cookie."""
    secret = os.environ.get(SECRET_ENV, "")
    if secret and len(secret) < SECRET_MIN:
        raise IvrError(f"{SECRET_ENV} is {len(secret)} characters long: give it at least "
                       f"{SECRET_MIN} random ones (e.g. `openssl rand -hex 32`), or unset it "
                       "for a random key of this process")
    if secret:
        return secret
    log.warning("%s is not set: sessions are signed with a random key of this process and end "
                "when it stops; export %s (e.g. `openssl rand -hex 32`) to keep them",
                SECRET_ENV, SECRET_ENV)
    return secrets.token_hex(32)


_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def secure_cookie() -> bool:
    """IVR_WEB_SECURE_COOKIE, read strictly: `true` or `yes` left the Secure flag off without
    a word, and the session cookie then went over plain http."""
    raw = os.environ.get(SECURE_ENV, "")
    if raw.strip().lower() in _ON:
        return True
    if raw.strip().lower() in _OFF:
        return False
    raise IvrError(f"{SECURE_ENV}={raw[:20]!r} is neither on nor off: set it to 1 behind a TLS "
                   "proxy (the cookie then goes over https only), or to 0 or unset")


def _security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
            "media-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        # Every page and download but the static files: a GDPR export, a proof of consent, a
        # contact list must not stay in a shared computer's browser cache after logout
        if not request.url.path.startswith("/static/") and \
                "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response


PAGE_ROUTING_ERRORS = (404, 405)  # no route has this URL, or not for this method
PAGE_TOO_LARGE = 413  # a chunked upload past its cap, stopped as a route read it (gate.py)


def _error_handlers(app: FastAPI, error_page: ErrorPage) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A URL no route matches (/c/demo/nope, a form's URL opened by GET) and a chunked
        upload stopped past its cap are the short page in the operator's language outside
        /api/ (they were JSON); the API, and every other status, keep FastAPI's JSON answer."""
        if request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == PAGE_TOO_LARGE:
            return gate.refusal(request, exc.status_code, str(exc.detail))
        if exc.status_code in PAGE_ROUTING_ERRORS:
            page = error_page(request, exc.status_code, str(exc.detail),
                              f"no_route_{exc.status_code}")
            page.headers.update(exc.headers or {})  # a 405's Allow
            return page
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        return gate.login_answer(request)  # the same answer as an upload's, refused earlier

    @app.exception_handler(IvrError)
    async def ivr_error(request: Request, exc: IvrError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    async def store_away(request: Request, exc: Exception) -> Response:
        """A store locked past the wait (a purge, a big import), full or unreachable: one line
        saying so, as the CLI does, instead of a bare 500 (an opposition or a Pause the
        operator could not tell was done or not)."""
        trouble = store_trouble(exc)
        if trouble is None:
            raise exc  # a bug: its 500 and traceback stay
        detail = f"store {trouble[0]}: the request stopped there, nothing after that point " \
            f"was written; {trouble[1]}"
        headers = {"Retry-After": "5"}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=503, headers=headers)
        page = error_page(request, 503, detail, "store_trouble")
        page.headers.update(headers)
        return page

    for driver_error in _driver_errors():
        app.add_exception_handler(driver_error, store_away)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = invalid_detail(exc.errors())
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, status_code=422)
        # a page's form sent without a field (no file chosen): a page, not the API's JSON
        return error_page(request, 422, detail, "form_incomplete")


def _driver_errors() -> list[type[Exception]]:
    """The store drivers' error classes (psycopg's only when installed)."""
    import sqlite3
    found: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:
        return found
    return found + [psycopg.Error]


def invalid_detail(errors: Any) -> str:
    """One line naming the field and what to send. A body that is not a JSON object (bad
    JSON, a form where JSON goes, none at all) named no field: "0: JSON decode error"."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    where = ".".join(p for p in loc if p != "body") or "request"
    kind = first.get("type", "")
    if kind == "json_invalid" or (loc == ["body"] and kind in ("missing", "model_attributes_type",
                                                              "dict_type")):
        return ("body: send a JSON object with Content-Type: application/json (the fields of "
                "each route: /api/openapi.json)")
    return f"{where}: {first.get('msg', 'invalid')}"


class Overviews(Refreshing):
    """The overviews; a dropped one (after an upload, a run control, an erasure: what the
    routes drop) drops the plan its 'why nobody is called' came from too, else that line kept
    saying "no contacts: import a list" for up to PLAN_TTL_S after an upload."""

    def __init__(self, plans: PlanCache, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plans = plans

    def drop(self, key: str) -> None:
        self.plans.forget(key)
        super().drop(key)

    def drop_all(self) -> None:
        self.plans.forget()
        super().drop_all()


def _caches(app: FastAPI, cfg: Config, stores: Stores) -> None:
    """What pages and events read often and the store computes slowly (ivr/web/cache.py),
    refreshed by one background thread with its own store."""
    from ivr.web import service
    from ivr.web.chart import per_hour_svg
    plans = PlanCache()
    app.state.worker = worker = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="ivr-web-refresh")
    # Report downloads stream from these threads, each with its own store (ivr/web/api.py).
    app.state.exports = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ivr-web-export")

    kept = Marked(stores.marker)  # the overview's aggregates: kept until the next commit

    def overview(campaign: str) -> dict[str, Any]:
        data = service.overview(cfg, stores.get(), campaign, now(), plans, kept)
        return {**data, "chart_svg": per_hour_svg(data["per_hour"], cfg.schedule.timezone)}

    def names(_: str) -> list[str]:
        return sorted(set(stores.get().campaigns()) | {cfg.campaign.name})
    app.state.overviews = Overviews(plans, overview, OVERVIEW_FRESH_S, worker,
                                    stale_max_s=OVERVIEW_STALE_MAX_S)
    app.state.preflights = Refreshing(
        lambda c: service.preflight(cfg, stores.get(), c), PREFLIGHT_FRESH_S, worker)
    app.state.lists = Refreshing(
        lambda c: [dict(r) for r in stores.get().lists_of(c)], LISTS_FRESH_S, worker)
    app.state.campaign_names = Refreshing(names, LISTS_FRESH_S, worker)
    app.state.reports = Marked(stores.marker)
    app.state.kept_csv = KeptBlocks()  # report.csv's blocks, reused while unchanged
    app.state.event_texts = {}  # (campaign, lang) -> (overview, SSE text): api._event_text


def _warm(app: FastAPI, campaign: str) -> Future[None]:
    """Compute the configured campaign's aggregates on the refresh thread as the server starts,
    so the first console to open does not wait seconds for the overview over a big store (a
    request arriving meanwhile waits for this computation and shares it)."""
    from ivr.web import service

    def warm() -> None:
        for cache in ("overviews", "lists", "preflights"):
            try:
                getattr(app.state, cache).get(campaign)
            except Exception:  # noqa: BLE001 - the first request computes again and reports it
                pass
        try:  # report.json too: kept until the next commit to the store
            app.state.reports.get(campaign, lambda: service.report_json(
                app.state.stores.get(), campaign))
        except Exception:  # noqa: BLE001 - as above
            pass
    return app.state.worker.submit(warm)


def create_app(cfg: Config, store_factory: StoreFactory, *,
               limiter: LoginLimiter | None = None, freeze_gc: bool = False) -> FastAPI:
    """The console for `cfg` (its campaign is the default one) over stores from
    `store_factory` (called once per worker thread). `freeze_gc`: the console has its process
    to itself (`ivr web`): once started, what exists (imports, the warmed caches) is moved out
    of the garbage collector's sight (gc.freeze), else each full pass walks it again: ~50 ms
    over ~110,000 objects, on the event loop of whichever request it falls in (bench_web
    --trace showed one in a 37.7 MB report.csv download); after the freeze ~0.4 ms."""
    from ivr.web import api, pages, rights_pages
    stores = Stores(store_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:  # serving starts once the overview is ready, or after WARM_WAIT_S at most
            await asyncio.wait_for(asyncio.wrap_future(_warm(app, cfg.campaign.name)),
                                   WARM_WAIT_S)
        except asyncio.TimeoutError:
            pass
        if freeze_gc:
            gc.collect()  # not to freeze garbage with the rest
            gc.freeze()
        yield
        app.state.worker.shutdown(wait=True, cancel_futures=True)
        app.state.exports.shutdown(wait=True, cancel_futures=True)
        stores.close()  # every thread's connection, once the server has stopped

    app = FastAPI(lifespan=lifespan, title="ivr console API", version="1",
                  description="The campaign console's JSON API: every page uses it. "
                  "Authenticate with the session cookie (writes then need X-CSRF-Token) or "
                  "with Authorization: Bearer <token from `ivr users token NAME`>.",
                  # FastAPI's Swagger/ReDoc load from a CDN with inline scripts (blocked by
                  # the CSP): /api/docs is served by pages.api_docs instead (ivr/web/docs.py)
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  dependencies=[Depends(gate.no_nul)])
    app.state.cfg = cfg
    app.state.stores = stores
    app.state.limiter = limiter or LoginLimiter()
    app.state.rejects = {}  # upload id -> its rejected lines (download as CSV), a few kept
    _caches(app, cfg, stores)
    # Added first, so innermost: SessionMiddleware has decoded the cookie, and the security
    # headers wrap its refusals too.
    app.add_middleware(gate.Gate)
    _security_headers(app)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(),
                       session_cookie="ivr_session", max_age=SESSION_MAX_AGE_S,
                       same_site="strict", https_only=secure_cookie())
    app.state.error_page = pages._error_page  # the gate's refusals of a page too
    _error_handlers(app, pages._error_page)  # pages' own 403/404 page
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(rights_pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


__all__ = ["Acting", "HTTPException", "Stores", "create_app"]
