"""StoreBackend is the store's whole interface: the SQLite Store implements each member with the
same signature, and the program outside ivr/store/ calls nothing else on a store."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from ivr.store import Store, StoreBackend

PACKAGE = Path(__file__).resolve().parents[1] / "ivr"
USE = re.compile(r"\bstore\.([a-z_][a-z0-9_]*)\b")


def members() -> dict[str, object]:
    return {name: value for name, value in vars(StoreBackend).items()
            if not name.startswith("_") and callable(value)}


def test_the_protocol_lists_the_calls_path_and_the_records_paths() -> None:
    assert {"claim_attempt", "call", "mark_answered", "finish_answered", "finish_unanswered",
            "set_hangup_cause", "set_hangup_cause_by_channel", "open_calls", "history",
            "add_optout", "is_opted_out", "audit", "transaction", "last_call_id",
            "outcome_counts", "pending_contacts", "export_calls", "erase_person",
            "import_session"} <= set(members())
    assert not {"q", "one", "db", "create_attempt"} & set(members())  # raw SQL stays inside


def test_the_sqlite_store_implements_every_member_with_its_signature() -> None:
    for name, proto in members().items():
        impl = getattr(Store, name, None)
        assert impl is not None, name
        got, want = inspect.signature(impl), inspect.signature(proto)  # type: ignore[arg-type]
        assert got.parameters == want.parameters, name
        if not hasattr(impl, "__wrapped__"):  # a @contextmanager's annotation is its generator's
            assert got.return_annotation == want.return_annotation, name


def test_the_postgresql_store_implements_every_member_with_its_signature() -> None:
    from ivr.store.pg import PgStore
    for name, proto in members().items():
        impl = getattr(PgStore, name, None)
        assert impl is not None, name
        got, want = inspect.signature(impl), inspect.signature(proto)  # type: ignore[arg-type]
        assert got.parameters == want.parameters, name
        if not hasattr(impl, "__wrapped__"):  # a @contextmanager's annotation is its generator's
            assert got.return_annotation == want.return_annotation, name


def test_the_program_uses_only_the_protocol() -> None:
    """`store.x` outside ivr/store/ (the config's `cfg.store.path` aside) is a protocol member."""
    used: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("store/"):
            continue
        # The config's keys (cfg.store.x, and store.path/url/optout_key_file named in messages)
        # are not store members.
        code = re.sub(r"\bcfg\.store\.|\bstore\.(path|url|optout_key_file)\b|ivr\.store\.",
                      "", path.read_text())
        for m in USE.finditer(code):
            used.setdefault(m.group(1), set()).add(rel)
    attributes = set(StoreBackend.__annotations__)  # remote, shares_work, controller_id
    outside = {name: files for name, files in used.items()
               if name not in members() and name not in attributes}
    assert outside == {}
    assert {"claim_attempt", "finish_answered", "open_calls"} <= set(used)  # the scan works
