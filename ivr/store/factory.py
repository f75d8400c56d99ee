"""Which store a config opens: SQLite for `store.path` (the embedded default), PostgreSQL for
`store.url` (several controllers, one central database)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.store.base import StoreBackend

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.store.pg_cluster import PgCluster


def open_store(cfg: "Config", busy_timeout_s: float = 30.0) -> StoreBackend:
    """busy_timeout_s: how long a SQLite write waits for a lock (PostgreSQL: how long to wait
    for a connection). The opposition key: IVR_OPTOUT_KEY or store.optout_key_file."""
    key_file = cfg.path(cfg.store.optout_key_file) if cfg.store.optout_key_file else None
    if cfg.store.url:
        from ivr.store.pg import PgStore  # psycopg is loaded only for a PostgreSQL store
        return PgStore.open(cfg.store.url, optout_key_file=key_file,
                            connect_timeout_s=min(max(busy_timeout_s, 2.0), 10.0))
    from ivr.store.sqlite import Store
    return Store.open(cfg.path(cfg.store.path), busy_timeout_s=busy_timeout_s,
                      optout_key_file=key_file)


def cluster_for(cfg: "Config") -> "PgCluster":
    """The private cluster this config names (`ivr db`, the cluster demo): db.dir, else
    <pbx.sandbox_dir>/pg (beside the sandbox Asterisk's state), on db.port."""
    from ivr.store.pg_cluster import PgCluster
    base = cfg.path(cfg.db.dir) if cfg.db.dir else cfg.path(cfg.pbx.sandbox_dir) / "pg"
    return PgCluster(base, cfg.db.port)
