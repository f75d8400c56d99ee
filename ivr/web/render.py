"""A console page drawn from its template (ivr/web/templates) in the operator's language, with
the session's CSRF token and the address its language switch returns to: the page's own, or
for a form's result (drawn at the form's POST-only address) its section's page."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from ivr.web import check_words, i18n, import_words
from ivr.web.auth import SAFE_METHODS, csrf_token, session_left_s
from ivr.web.display import decimal, local_time, node_state, refusal, whole, why_text
from ivr.web.english_parts import english_marked
from ivr.web.gate import section_of

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@pass_context
def _local(ctx: Context, value: Any, named: bool = True, seconds: bool = False) -> str:
    """`{{ at | local }}`: an instant in the campaign's zone (`tz`), as console.js writes it."""
    return local_time(value, ctx.get("tz") or "UTC", named=named, seconds=seconds)


@pass_context
def _why(ctx: Context, overview: dict[str, Any]) -> str:
    """`{{ o | why }}`: why nobody is called, in the page's language (display.why_text)."""
    return why_text(ctx.get("lang") or i18n.DEFAULT, overview, ctx.get("tz") or "UTC")


def _worded(words: Callable[[str, Any], str]) -> Callable[[Context, Any], str]:
    """A filter giving `words(page's language, value)`."""
    @pass_context
    def apply(ctx: Context, value: Any) -> str:
        return words(ctx.get("lang") or i18n.DEFAULT, value)
    return apply


templates.env.filters.update(
    local=_local, why=_why,
    node_state=_worded(node_state),          # a node's state (down, full, holding...)
    dec=_worded(decimal),                    # 12,5 in French, 12.5 in English
    num=_worded(whole),                      # 12 345 in French, 12,345 in English
    en=english_marked,                       # « Détail en anglais : » <span lang="en">…</span>
    reason=_worded(import_words.reason),     # a rejected line's reason, an import's warning
    counted=_worded(import_words.summary),   # an upload's counts
    finding=_worded(check_words.finding))  # a check's finding: its rule's headline first


def lang(request: Request) -> str:
    return i18n.pick(request.session.get("lang"))


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    code, path = lang(request), request.url.path
    if request.method not in SAFE_METHODS:  # a form's result: its URL takes no GET (a 405)
        path = section_of(path) or path
    elif request.url.query:  # the language switch keeps the login's next, a look-up, a page
        path = f"{path}?{request.url.query}"
    base = {"t": i18n.translator(code), "lang": code, "csrf": csrf_token(request), "path": path,
            "tz": zone_of(request), "colon": " :" if code == "fr" else ":",  # French spacing
            "session_left": session_left_s(request.session)}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)


def zone_of(request: Request) -> str:
    """The zone the pages show times in: the config's schedule.timezone (the calling
    windows' zone; the store and the API keep UTC)."""
    cfg = getattr(request.app.state, "cfg", None)
    return cfg.schedule.timezone if cfg is not None else "UTC"


def error_page(request: Request, status: int, detail: str, key: str | None) -> Response:
    return render(request, "error.html", {"status": status, "detail": detail, "key": key,
                                           "user": None, "campaign": None}, status)


def flash_text(request: Request, key: str, **values: Any) -> str:
    """A flash's words, in the page's language."""
    return i18n.translate(lang(request), key).format(**values)


def refused(request: Request, exc: Exception) -> str:
    """A refusal's words for the page (display.refusal): French where the page is."""
    return refusal(lang(request), str(exc))
