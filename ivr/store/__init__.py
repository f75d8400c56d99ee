"""The store: `StoreBackend` is the interface the program uses; `Store` its SQLite backend."""
from ivr.store.base import CallResult, Claim, Decision, History, StoreBackend, parse_utc, utc
from ivr.store.sqlite import Store

__all__ = ["CallResult", "Claim", "Decision", "History", "Store", "StoreBackend", "parse_utc",
           "utc"]
