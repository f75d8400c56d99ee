"""Which campaigns the console shows a user. One store may hold several parties' campaigns; a
user bound to some (`ivr users add NAME --role operator --campaign C`, store/user_scope.py)
sees those alone: the switcher, /api/campaigns, every campaign's pages and API, and of one
person's proof of consent the rows of those campaigns. A campaign outside them answers as
one that does not exist: its name is not told either."""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from ivr.web.auth import NotLoggedIn, User


def asking(request: Request, user: User) -> User:
    """Keep the authenticated user on the request, for known() (who() and open_page())."""
    request.state.user = user
    return user


def known(request: Request, campaign: str) -> None:
    """404 unless `campaign` is in the store and the user's. Runs after who() or
    open_page(): without a user kept on the request it refuses (fails closed)."""
    user = getattr(request.state, "user", None)
    if not isinstance(user, User):
        raise NotLoggedIn()
    if not user.sees(campaign):
        raise not_yours(campaign)
    names = request.app.state.campaign_names
    if campaign not in names.get(""):
        names.drop("")  # created since? ask the store once more
        if campaign not in names.get(""):
            raise HTTPException(404, f"no campaign {campaign!r} in this store")


def not_yours(campaign: str) -> HTTPException:
    """The 404 of a campaign the user may not see: worded so as not to say it exists."""
    return HTTPException(404, f"no campaign {campaign!r} among the campaigns you may see")


def campaigns_seen(request: Request, user: User) -> list[str]:
    """The store's campaigns this user sees, in the switcher's order."""
    return [c for c in request.app.state.campaign_names.get("") if user.sees(c)]


def home_campaign(request: Request, user: User) -> str | None:
    """The campaign a user lands on: the console's own if theirs, else their first one."""
    own = request.app.state.cfg.campaign.name
    if user.sees(own):
        return own
    seen = campaigns_seen(request, user)
    return seen[0] if seen else None


def console_campaign_seen(request: Request) -> bool:
    """May the user of this request be told the console's own campaign's name? (Its prompts
    are the console's: another campaign's prompts page names it.)"""
    user = getattr(request.state, "user", None)
    return isinstance(user, User) and user.sees(request.app.state.cfg.campaign.name)


def consent_seen(user: User, found: dict[str, Any]) -> dict[str, Any]:
    """One person's proof of consent as this user may see it: the calls and bindings of
    their campaigns. An opposition holds for every campaign, so it stays; the campaign
    it was recorded in, and how, are told only when it is theirs."""
    if user.campaigns is None:
        return found
    proof = []
    for row in found["proof"]:
        if row.get("source") == "optouts":
            proof.append(row if user.sees(row["campaign"]) else _unnamed(row))
        elif user.sees(row.get("campaign")):
            proof.append(row)
    return {**found, "proof": proof,
            "campaigns": [c for c in found["campaigns"] if user.sees(c["campaign"])]}


def optout_seen(user: User, found: dict[str, Any]) -> dict[str, Any]:
    """An opposition lookup: the campaign it was recorded in only when it is theirs."""
    if found.get("campaign") is None or user.sees(found["campaign"]):
        return found
    return _unnamed(found)


def _unnamed(optout: dict[str, Any]) -> dict[str, Any]:
    """Another campaign's opposition, as a user bound elsewhere sees it: when, not where nor
    how (its `via`, phone-key, told that another party had called this person)."""
    return {**optout, "campaign": None, "via": None}


# Preflight lines of what belongs to no campaign: lists imported before lists had campaigns,
# named by their source, in every campaign's preflight. Binding one is an unbound admin's
# (`ivr contacts share`); a user bound to campaigns is not shown another party's list names.
NO_CAMPAIGN_CODES = frozenset({"unbound_list"})


def preflight_seen(user: User, violations: list[dict[str, str]]) -> list[dict[str, str]]:
    """A campaign's preflight as `user` sees it: without NO_CAMPAIGN_CODES if bound."""
    if user.campaigns is None:
        return violations
    return [v for v in violations if v["code"] not in NO_CAMPAIGN_CODES]

