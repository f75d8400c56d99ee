"""Which `controllers` rows of this machine belong to a process that is gone (issue 14).

A controller killed and restarted on the same machine need not wait for its predecessor's
lease: that row's pid is dead here (no process, or a zombie). A pid in use, even by another
program, is left to the lease (see process_gone). The restarted controller marks such rows stopped when it registers, and its reconciliation then
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
from pathlib import Path

from ivr.store.base import Row

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


def process_gone(pid: int) -> bool:
    """Whether no process `pid` runs here: none exists, or a zombie (it runs nothing). A pid
    in use by any process, even another program on a reused pid, answers False: telling a
    reused pid from the run by start times rests on the wall clock (the kernel's boot time
    moves with every clock step), and a live run judged gone would have its calls settled
    and dialled again. A reused pid waits for the lease instead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process: it exists (its /proc may be hidden: hidepid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # ended in between, or unreadable: ask once more, else doubt
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces
    return bool(fields) and fields[0] in ("Z", "X")


def is_gone(row: Row) -> bool:
    """Row's process is dead or a zombie. Any doubt answers False: the lease decides."""
    try:
        return process_gone(int(row["pid"]))
    except (OSError, ValueError, TypeError):
        return False


def gone_controllers(rows: Iterable[Row], host: str) -> list[str]:
    """The ids among `rows` (controllers rows, not stopped) that are this machine's and whose
    process is gone: never another host's, another namespace's, nor this very process's."""
    tag = machine_tag()
    if not tag:
        return []
    return [str(r["id"]) for r in rows
            if r["host"] == host and len(str(r["id"])) == 16 and str(r["id"])[8:] == tag and
            r["stopped_at"] is None and is_gone(r)]
