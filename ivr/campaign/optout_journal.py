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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from ivr.callflow.agi_callback import VIA_CALLBACK, caller_e164
from ivr.campaign.nodes import NodeState
from ivr.errors import StoreError
from ivr.telephony.node import ActionRefused, JournaledOptout

if TYPE_CHECKING:
    from ivr.campaign.dialer import Dialer
    from ivr.store.sqlite import Store

log = logging.getLogger(__name__)
VIA_KEY = "phone-key"  # optouts.via of a key pressed in a call (as agi_ivr.py's)
RETRY_S = 2.0  # a reading the link or the store failed is tried again this often


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


@dataclass
class Recorded:
    """What a reading put on the list: `added` new oppositions; `refused` entries the store
    would not take (StoreError: a real number while the opposition key sits beside a SQLite
    store), the first one's reason in `why`, its number taken out."""
    added: int = 0
    refused: int = 0
    why: str = ""


def record(store: Store, found: Mapping[str, datetime | None], now: datetime,
           calls: Mapping[str, datetime | None] | None = None) -> Recorded:
    """Put the numbers not yet opposed on the list, and those of this store's calls in
    `calls` (by channel), dated when the person objected (never later than now: a PBX clock
    ahead does not postdate them). An entry the store refuses does not hold back the others."""
    out = Recorded()
    for number, at in sorted(found.items()):
        _oppose(out, store, number, VIA_CALLBACK, None, at, now)
    for channel_id, at in sorted((calls or {}).items()):
        call = store.call_by_channel(channel_id)
        if call is not None:  # another store's call, or erased since (no channel): skipped
            _oppose(out, store, call["number"], VIA_KEY, call["campaign"], at, now)
    return out


def _oppose(out: Recorded, store: Store, number: str, via: str, campaign: str | None,
            at: datetime | None, now: datetime) -> None:
    try:
        if not store.is_opted_out(number):
            when = now if at is None else min(at, now)
            out.added += int(store.add_optout(number, via, when, campaign))
    except StoreError as exc:
        out.refused += 1
        out.why = out.why or str(exc).replace(number, "<number>")  # never a number in a log


@dataclass
class _NodeJournal:
    """One node's readings in one run: one at a time (a second waits, then reads again, so
    nothing is added twice), one retry due at most, each problem told once."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry_due: bool = False
    told: set[str] = field(default_factory=set)

    def once(self, message: str, *args: object) -> None:
        if message not in self.told:
            self.told.add(message)
            log.error(message, *args)


_nodes: WeakKeyDictionary[Dialer, dict[str, _NodeJournal]] = WeakKeyDictionary()


def _of(dialer: Dialer, ns: NodeState) -> _NodeJournal:
    return _nodes.setdefault(dialer, {}).setdefault(ns.name, _NodeJournal())


async def drain(dialer: Dialer, ns: NodeState) -> int:
    """Read the node's journal and oppose its numbers; how many were new. A node that will not
    show it, or entries the store refuses, are told once (ERROR) and skipped; a dropped link
    or an unreachable store raises, for the caller to try again."""
    st = _of(dialer, ns)
    async with st.lock:
        try:
            entries = await ns.node.journaled_optouts()
        except ActionRefused as exc:
            st.once("node %s: its failsafes' journal of oppositions cannot be read (%s): people "
                    "who objected while no controller served them were told it is recorded, "
                    "but are not on the opposition list. The AMI user needs `reporting` in its "
                    "write line, and Asterisk 16.28, 18.14, 19.6 or later (DBGetTree)",
                    ns.name, exc)
            return 0
        found, calls = numbers(entries, dialer.cfg.default_region), channels(entries)
        if not found and not calls:
            return 0
        done = await dialer.off_loop(record, dialer.store, found, dialer.clock.now(), calls)
    if done.refused:
        st.once("node %s: the store refused %d opposition(s) of the failsafes' journal: %s",
                ns.name, done.refused, done.why)
    if done.added:
        log.warning("node %s: %d person(s) objected while no controller served them (on the "
                    "opposition line, or in an outbound call's failsafe; the dialplan "
                    "journaled them): now on the opposition list", ns.name, done.added)
    return done.added


async def drain_or_retry(dialer: Dialer, ns: NodeState) -> None:
    """drain, and on a failure (link dropped, store away: the journal stays on the PBX) a
    retry later, until one succeeds or the dialer is closed; never raises."""
    try:
        await drain(dialer, ns)
    except Exception as exc:
        if not dialer.closed:
            _retry_later(dialer, ns, exc)


def soon(dialer: Dialer, ns: NodeState) -> None:
    """On the node's word that it journaled someone: read the journal now, in a task."""
    if dialer.closed:
        return
    task = asyncio.get_running_loop().create_task(drain_or_retry(dialer, ns))
    dialer._tasks.add(task)
    task.add_done_callback(dialer._tasks.discard)


def _retry_later(dialer: Dialer, ns: NodeState, exc: Exception) -> None:
    """One retry due per node, however many readings failed meanwhile (a burst of
    failsafes while the store is away starts one chain, not one each)."""
    st = _of(dialer, ns)
    if st.retry_due:
        return
    st.retry_due = True
    log.warning("node %s: reading the failsafes' journal of oppositions failed (%s): "
                "retrying in %g s", ns.name, exc, RETRY_S)

    def again() -> None:
        st.retry_due = False
        soon(dialer, ns)
    dialer.clock.call_later(RETRY_S, again)
