"""Whose server a postmaster.pid names (for ivr/store/pg_cluster.py's status, down and up).

A live `postgres` with the file's pid is not enough: after a reboot the pid may be another
cluster's (the system's: same user, same name), and a pid file may have been copied. A
postmaster's working directory is its data directory, but reading /proc/<pid>/cwd of another
user's process needs CAP_SYS_PTRACE, which root lacks under Docker's default capabilities.
Then what needs no ptrace decides: the command line pg_ctl gave it (`postgres -D <dir>`) and
its uid (the data directory's owner: postgres runs on no other). When neither can decide, the
file is neither ours to report as running nor stale enough to remove.
"""
from __future__ import annotations

import enum
import os
from pathlib import Path


class Claim(enum.Enum):
    OURS = "ours"        # our data directory's server
    OTHER = "other"      # positively not: another program, or another cluster's server
    GONE = "gone"        # no such process (PostgreSQL clears such a file itself)
    UNKNOWN = "unknown"  # a postgres we cannot see into


def claim(pid: int, data: Path, proc: Path = Path("/proc")) -> Claim:
    """Whether process `pid` is the postmaster of data directory `data`."""
    ours = os.path.realpath(data)
    here = proc / str(pid)
    try:
        comm = (here / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return Claim.GONE
    except OSError:
        return Claim.UNKNOWN
    if not comm.startswith("postgres"):
        return Claim.OTHER
    try:
        return Claim.OURS if os.readlink(here / "cwd") == ours else Claim.OTHER
    except (FileNotFoundError, ProcessLookupError):
        return Claim.GONE
    except OSError:
        return _by_cmdline(here, ours, data)  # EACCES: no CAP_SYS_PTRACE


def _by_cmdline(here: Path, ours: str, data: Path) -> Claim:
    """From /proc/<pid>/cmdline and /proc/<pid>/status, which any user may read."""
    try:
        args = (here / "cmdline").read_bytes().decode(errors="replace").split("\0")
        status = (here / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return Claim.GONE
    except OSError:
        return Claim.UNKNOWN
    named = _data_arg(args)
    if named is None or not os.path.isabs(named):
        return Claim.UNKNOWN  # a backend (its title replaces its arguments), or PGDATA
    if os.path.realpath(named) != ours:
        return Claim.OTHER
    try:
        owner = os.stat(data).st_uid
    except OSError:
        return Claim.UNKNOWN
    uids = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("Uid:")), [])
    return Claim.OURS if uids and set(uids) == {str(owner)} else Claim.UNKNOWN


def _data_arg(args: list[str]) -> str | None:
    """The data directory in `postgres -D <dir>` (or `-D<dir>`), as pg_ctl starts it."""
    for i, arg in enumerate(args):
        if arg == "-D" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("-D") and len(arg) > 2:
            return arg[2:]
    return None
