"""The store: `StoreBackend` is the interface the program uses; `Store` its SQLite backend.

`Store` is imported on first use (PEP 562): `ivr.store.base` is imported through this package
by every module, and a PostgreSQL store or a dry run's preflight need not load sqlite-utils."""
from typing import TYPE_CHECKING, Any

from ivr.store.base import CallResult, Claim, Decision, History, StoreBackend, parse_utc, utc

if TYPE_CHECKING:
    from ivr.store.sqlite import Store

__all__ = ["CallResult", "Claim", "Decision", "History", "Store", "StoreBackend", "parse_utc",
           "utc"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from ivr.store.sqlite import Store
        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
