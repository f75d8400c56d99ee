"""Which `controllers` rows of this machine belong to a process that is gone (issue 14).

A controller killed and restarted on the same machine need not wait for its predecessor's
lease: that row's pid is dead here, or alive but another process (the pid was reused). The
restarted controller marks such rows stopped when it registers, and its reconciliation then
settles their open attempts at once (open_calls counts a stopped controller's as its own).

A row is this machine's only when its host name matches AND its id carries this kernel boot's
and pid namespace's tag (controller_id: 8 random hex digits, then the tag's 8): two containers
sharing a host name, or two machines misnamed alike, have other tags, so a pid that means
another process there is never judged here; their rows wait for the lease. No SQL here: the
backends read and mark the rows.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ivr.store.base import Row, parse_utc

# A live process whose start reads later than its row's started_at by more than this is
# another process on a reused pid. The start is read as boot time (whole seconds) + ticks,
# so it reads up to 1 s early, never late; the slack absorbs a small clock step forward.
START_SLACK = timedelta(seconds=2)


def machine_tag() -> str:
    """8 hex digits naming this kernel boot and pid namespace ("" where /proc lacks them:
    then no row is ever judged here, the lease decides)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}|{pid_ns}".encode()).hexdigest()[:8]


def controller_id() -> str:
    """A new controller's id, 16 hex digits: 8 random, then this machine's tag (all 16
    random without one). The random half is unique enough among one machine's runs, and the
    store's primary key refuses a repeat rather than sharing an id."""
    return secrets.token_hex(4) + (machine_tag() or secrets.token_hex(4))


def process_start(pid: int) -> datetime | None:
    """When process `pid` started (UTC), None if there is none or it is a zombie (it runs
    nothing). Raises PermissionError/OSError when it exists but cannot be read."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None  # ended in between
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    ticks = int(fields[19])  # field 22 of proc(5): starttime, clock ticks after boot
    return datetime.fromtimestamp(_boot_time() + ticks / os.sysconf("SC_CLK_TCK"), timezone.utc)


def _boot_time() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def is_gone(row: Row) -> bool:
    """Row's process is dead, a zombie, or alive but started after the row (pid reused).
    Any doubt (unreadable /proc) answers False: the lease decides instead."""
    try:
        start = process_start(int(row["pid"]))
    except (OSError, ValueError, IndexError):
        return False
    return start is None or start > parse_utc(str(row["started_at"])) + START_SLACK


def gone_controllers(rows: Iterable[Row], host: str) -> list[str]:
    """The ids among `rows` (controllers rows, not stopped) that are this machine's and whose
    process is gone: never another host's, another namespace's, nor this very process's."""
    tag = machine_tag()
    if not tag:
        return []
    return [str(r["id"]) for r in rows
            if r["host"] == host and len(str(r["id"])) == 16 and str(r["id"])[8:] == tag and
            r["stopped_at"] is None and is_gone(r)]
