"""The store as one person sees it: every audit row the library writes through it names them
as its actor. The console's user (web/pages.py, web/api.py), or the system user behind a rights
command of the CLI (`cli_actor`)."""
from __future__ import annotations

import getpass
import os
from typing import Any


class Acting:
    """The store as one user sees it: every audit row the library writes through it names
    that user as its actor."""

    def __init__(self, store: Any, actor: str) -> None:
        self._store, self._actor = store, actor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def audit(self, action: str, number: str | None, detail: dict[str, Any], now: Any,
              actor: str | None = None) -> None:
        self._store.audit(action, number, detail, now, actor=actor or self._actor)

    def add_optout(self, number: str, via: str, now: Any, campaign: str | None = None,
                   actor: str | None = None) -> bool:
        """The store writes this one's audit row itself: it names the user too."""
        return bool(self._store.add_optout(number, via, now, campaign,
                                           actor=actor or self._actor))


def cli_actor() -> str:
    """Who runs this command: the user behind sudo, else the login user, marked as the CLI's
    (a console user's name never ends so)."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user} (cli)"
