"""The SQLite backend's reads for planning, preflight and the report."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ivr.store.base import Row
from ivr.store.sqlite_core import SQLiteCore


class RecordsSQL(SQLiteCore):
    # -- planning and preflight ---------------------------------------------------------------
    def pending_contacts(self) -> list[Row]:
        """Contacts still to call (status pending), oldest first; the rules then judge them."""
        return self._rows("SELECT * FROM contacts WHERE status = 'pending' ORDER BY id")

    def contact_status_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT status, COUNT(*) AS n FROM contacts GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    def pending_sources(self) -> list[Row]:
        """Provenance of every list that still has contacts to call."""
        return self._rows(
            "SELECT source, basis, acquired_on, COUNT(*) AS contacts FROM contacts "
            "WHERE status = 'pending' GROUP BY source, basis, acquired_on ORDER BY source")
