"""The campaigns a console user is bound to (schema 21, table user_campaigns), shared by both
backends and the console. One store may hold several parties' campaigns: a user bound to
some sees and acts on those alone (web/scope.py); a user with no binding sees every campaign,
as each user did before 21. Both backends give a user's row its `campaigns`: the sorted names,
or None for every campaign (each statement selects them as JSON, a subquery written out
in full there: all SQL is literal; read_campaigns reads it)."""
from __future__ import annotations

import json
from collections.abc import Sequence

# What spans every campaign is an admin's: the users, the audit, a person's export and
# erasure. A user bound to campaigns cannot be one (refused in the store's transaction).
BOUND_ADMIN = ("user {name!r}: an admin acts on every campaign (users, the audit, GDPR export "
               "and erasure), so it cannot be bound to some: make it operator or viewer, or "
               "unbind it (`ivr users campaigns {name} --all`)")


def campaign_names(campaigns: Sequence[str] | None) -> list[str] | None:
    """The bindings to write: sorted, each once; None (every campaign) stays None. An empty
    list is refused: a user who may see nothing is a disabled one (`ivr users disable`)."""
    if campaigns is None:
        return None
    names = sorted(set(campaigns))
    if not names or any(not n.strip() for n in names):
        raise ValueError("--campaign: give a campaign's name (as in config.yaml's campaign.name)")
    return names


def read_campaigns(row: dict | None) -> dict | None:  # type: ignore[type-arg]
    """A user's row as both backends give it: `campaigns` the sorted names or None, from the
    JSON its statement selected (SQLite '[]', PostgreSQL NULL when there are none)."""
    if row is not None:
        names = json.loads(row["campaigns"]) if row.get("campaigns") else []
        row["campaigns"] = sorted(names) or None
    return row


def campaigns_of(campaigns: Sequence[str] | None) -> frozenset[str] | None:
    """A row's `campaigns` as a set, or None for every campaign."""
    return frozenset(campaigns) if campaigns else None


def check_scope(name: str, role: str, campaigns: Sequence[str] | None) -> None:
    """Refuse (ValueError) an admin bound to campaigns."""
    if role == "admin" and campaigns:
        raise ValueError(BOUND_ADMIN.format(name=name))


def shown(campaigns: Sequence[str] | None) -> str:
    """The campaigns as `ivr users list` and the audit say them."""
    return ", ".join(sorted(campaigns)) if campaigns else "every campaign"
