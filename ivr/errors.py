"""Library errors. The CLI turns each into a one-line message; nothing else is caught there."""


class IvrError(Exception):
    """Base of every error the operator can fix; str() is the one-line message."""


class ConfigError(IvrError):
    pass


class SandboxError(IvrError):
    pass


class PromptError(IvrError):
    pass


class ComplianceError(IvrError):
    pass


class ImportFileError(IvrError):
    pass


class StoreError(IvrError):
    pass


class PbxError(IvrError):
    pass


def store_trouble(exc: BaseException) -> tuple[str, str] | None:
    """(what, what to do) for a store that is away: locked past the wait, a full disk, an I/O
    error, PostgreSQL stopped or unreachable. None for anything else (a missing table is a bug:
    its traceback stays). Read from the error itself, so that no driver need be imported."""
    name = getattr(exc, "sqlite_errorname", None)  # sqlite3.Error
    if name is not None:
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return ("locked by another ivr command (a purge, an import) for longer than the "
                    "wait", "retry when it ends")
        if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL")):
            return "disk full or I/O error", "free space, then retry"
        return None
    if not any(c.__name__ == "OperationalError" and c.__module__.startswith("psycopg")
               for c in type(exc).__mro__):
        return None
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith("53"):  # 53100 disk full, 53200 out of memory
        return "PostgreSQL out of disk space or memory", "free space, then retry"
    if state in ("55P03", "57014", "40P01"):  # lock_timeout, statement_timeout, deadlock
        return ("locked by another ivr command (a purge, an import) for longer than the "
                "wait", "retry when it ends")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"PostgreSQL unreachable or failing ({first})", "check that it runs, then retry"
