"""The failsafes' journal of oppositions, in the node's AstDB (contract.JOURNAL_FAMILY):
- the opposition line's (dialplans/ivr-callback.conf): when no controller serves the line, its
  failsafe asks for the key itself and keeps each caller who pressed it, by number;
- the outbound one's (dialplans/ivr-outbound.conf): a callee who presses the call's opposition
  key during the failsafe's legal mentions, by the call's channel (contract.JOURNAL_CALLS); the
  store that placed that call opposes its number, any other store skips it.
A controller puts them on the opposition list when it reconciles the node, before it places a
call there (at start, after a reconnect or a join), and at once when the node says one was
written (OptoutsJournaled).

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
VIA_KEY = "phone-key"  # optouts.via of a key pressed in a call (as agi_ivr.py's)
RETRY_S = 2.0  # a reading the link or the store failed is tried again this often
_refused: WeakKeyDictionary[Dialer, set[str]] = WeakKeyDictionary()


def numbers(entries: list[JournaledOptout], region: str) -> dict[str, datetime | None]:
    """Each journaled caller ID as E.164 (the callback route's reading of it), with when it
    was journaled; one that is not a valid number is left out."""
    out: dict[str, datetime | None] = {}
    for entry in entries:
        if entry.channel_id:
            continue
        number = caller_e164(entry.number, region)
        if number is not None:
            out[number] = entry.at
    return out


def channels(entries: list[JournaledOptout]) -> dict[str, datetime | None]:
    """The outbound calls' channels whose callee pressed the opposition key in the failsafe."""
    return {e.channel_id: e.at for e in entries if e.channel_id}


def record(store: Store, found: Mapping[str, datetime | None], now: datetime,
           calls: Mapping[str, datetime | None] | None = None) -> int:
    """Put the numbers not yet opposed on the list, and those of this store's calls in
    `calls` (by channel), dated when the person objected (never later than now: a PBX clock
    ahead does not postdate them). How many were new."""
    added = sum(_oppose(store, number, VIA_CALLBACK, None, at, now)
                for number, at in sorted(found.items()))
    for channel_id, at in sorted((calls or {}).items()):
        call = store.call_by_channel(channel_id)
        if call is not None:  # another store's call, or erased since (no channel): skipped
            added += _oppose(store, call["number"], VIA_KEY, call["campaign"], at, now)
    return added


def _oppose(store: Store, number: str, via: str, campaign: str | None, at: datetime | None,
            now: datetime) -> int:
    if store.is_opted_out(number):
        return 0
    return int(store.add_optout(number, via, now if at is None else min(at, now), campaign))


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
    found, calls = numbers(entries, dialer.cfg.default_region), channels(entries)
    if not found and not calls:
        return 0
    added = await dialer.off_loop(record, dialer.store, found, dialer.clock.now(), calls)
    if added:
        log.warning("node %s: %d person(s) objected while no controller served them (on the "
                    "opposition line, or in an outbound call's failsafe; the dialplan "
                    "journaled them): now on the opposition list", ns.name, added)
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
