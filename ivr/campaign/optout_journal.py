"""The opposition line's journal (dialplans/ivr-callback.conf): when no controller serves the
line, its failsafe asks for the key itself and keeps each caller who pressed it in the node's
AstDB (contract.JOURNAL_FAMILY). A controller puts those numbers on the opposition list when it
reconciles the node, before it places a call there (at start, after a reconnect or a join),
and at once when the node says one was written (OptoutsJournaled).

The PBX keeps the journal (the controller's AMI user may read AstDB, not delete from it), so
each reading sees every caller so far: a number already on the list is skipped, not written
or audited again."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from ivr.callflow.agi_callback import VIA_CALLBACK, caller_e164
from ivr.campaign.nodes import NodeState
from ivr.telephony.node import ActionRefused, JournaledOptout

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer
    from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
RETRY_S = 2.0  # a reading the link or the store failed is tried again this often
_refused: WeakKeyDictionary[Dialer, set[str]] = WeakKeyDictionary()


def numbers(entries: list[JournaledOptout], region: str) -> dict[str, datetime | None]:
    """Each journaled caller ID as E.164 (the callback route's reading of it), with when it
    was journaled; one that is not a valid number is left out."""
    out: dict[str, datetime | None] = {}
    for entry in entries:
        number = caller_e164(entry.number, region)
        if number is not None:
            out[number] = entry.at
    return out


def record(store: Store, found: Mapping[str, datetime | None], now: datetime) -> int:
    """Put the numbers not yet opposed on the list, dated when the caller objected (never
    later than now: a PBX clock ahead does not postdate them). How many were new."""
    added = 0
    for number, at in sorted(found.items()):
        if not store.is_opted_out(number):
            when = now if at is None else min(at, now)
            added += store.add_optout(number, VIA_CALLBACK, when)
    return added


async def drain(dialer: Dialer, ns: NodeState) -> int:
    """Read the node's journal and oppose its numbers; how many were new. A node whose AMI
    user may not read AstDB is told once (WARNING) and skipped; a dropped link or an
    unreachable store raises, for the caller to try again."""
    try:
        entries = await ns.node.journaled_optouts()
    except ActionRefused as exc:
        told = _refused.setdefault(dialer, set())
        if ns.name not in told:
            told.add(ns.name)
            log.warning("node %s: the opposition line's journal cannot be read (%s): callers "
                        "who objected while no controller served the line are not put on the "
                        "opposition list; add `reporting` to the write line of this AMI user in "
                        "manager.conf", ns.name, exc)
        return 0
    found = numbers(entries, dialer.cfg.default_region)
    if not found:
        return 0
    added = await dialer.off_loop(record, dialer.store, found, dialer.clock.now())
    if added:
        log.warning("node %s: %d caller(s) objected on the opposition line while no "
                    "controller served it (its dialplan journaled them): now on the opposition "
                    "list", ns.name, added)
    return added


def soon(dialer: Dialer, ns: NodeState, tasks: set[asyncio.Task]) -> None:
    """On the node's word that it journaled a caller: read the journal now; a failure is
    logged and tried again until it succeeds or the dialer is closed."""
    if dialer.closed:
        return

    async def attempt() -> None:
        try:
            await drain(dialer, ns)
        except Exception as exc:  # link dropped, store away: the journal stays on the PBX
            if dialer.closed:
                return
            log.warning("node %s: reading the opposition line's journal failed (%s): "
                        "retrying", ns.name, exc)
            dialer.clock.call_later(RETRY_S, soon, dialer, ns, tasks)
    task = asyncio.get_running_loop().create_task(attempt())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
