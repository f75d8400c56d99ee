"""Who may see a console page or send its form: the logged-in user (else the login, and back),
the campaign known to them, and a form's csrf_token checked once the user is known."""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from ivr.web.scope import asking, campaigns_seen, known
from ivr.web.auth import User, authenticate, csrf_ok, require


def open_page(request: Request, campaign: str, action: str = "view") -> tuple[User, Any, dict]:
    """The logged-in user (else a redirect to /login), this thread's store acting as them,
    and what every campaign page shows (switcher, role, flash)."""
    from ivr.records.acting import Acting
    store = request.app.state.stores.get()
    user = asking(request, require(authenticate(request, store), action))
    known(request, campaign)
    ctx = {"user": user, "campaign": campaign, "campaigns": campaigns_seen(request, user),
           "flash": request.session.pop("flash", None),
           "can": {a: user.can(a) for a in ("control", "contacts", "optout", "prompts",
                                            "gdpr", "users")}}
    return user, Acting(store, user.name), ctx


def check_csrf(request: Request, token: str) -> None:
    if not csrf_ok(request, token):
        raise HTTPException(403, "missing or wrong csrf_token: reload the page and try again")


def open_form(request: Request, campaign: str, action: str, token: str
          ) -> tuple[User, Any, dict]:
    """A campaign page's form: who is logged in first (open_page), then its csrf_token. In that
    order: a form of a tab whose session ended (a logout in another) goes to the login and
    back to its page; a refusal would say the form expired and show no login."""
    page = open_page(request, campaign, action)
    check_csrf(request, token)
    return page
