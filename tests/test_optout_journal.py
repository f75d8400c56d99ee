"""The opposition line's journal (campaign/optout_journal.py): callers the line's failsafe
journaled in the node's AstDB while no controller served it are put on the opposition list
before the run places a call there, at once when the node says so mid-run, once each however
often the journal is read. The fake PBX answers DBGetTree over real AMI."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import pytest

from ivr import app
from ivr.campaign import optout_journal
from ivr.campaign.clock import Clock
from ivr.errors import StoreError
from ivr.telephony.ami_node import AmiNode
from ivr.telephony.fake_pbx import FakePbx, answer
from ivr.telephony.node import JournaledOptout

from conftest import Backend
from test_dialer import HASHES, SECRET, Rig, add_contacts, contact, fiction, make_cfg

OBJECTED = datetime(2026, 11, 30, 18, 5, tzinfo=timezone.utc)


def national(number: str) -> str:
    """The caller ID as a French carrier presents it: 0 and nine digits, SIP parameters."""
    return "0" + number[3:] + ";cpc=ordinary"


@asynccontextmanager
async def started(backend: Backend, journal: dict[str, str], pbx_class: type[FakePbx] = FakePbx,
                  setup: Callable[[Any], None] = lambda store: None) -> AsyncIterator[Rig]:
    """A controller started against a fake PBX whose journal already holds `journal`."""
    callees = {fiction(n): answer(["1"]) for n in (40, 41)}
    cfg = make_cfg(backend)
    store = backend.open()
    add_contacts(store, list(callees))
    setup(store)
    async with pbx_class(callees, user="ivr", secret=SECRET) as pbx:
        pbx.journal.update(journal)
        node = AmiNode("pbx", "127.0.0.1", pbx.ami_port, "ivr", SECRET)
        ctl = await app.start(cfg, store, Clock(), node=node, hashes=HASHES)
        try:
            yield Rig(pbx, ctl, store, cfg, ctl.clock)
        finally:
            await ctl.close()


def optout_rows(r: Rig) -> list[dict[str, Any]]:
    return [dict(row) for row in r.store.q("SELECT via, created_at FROM optouts")]


def test_a_caller_journaled_before_the_run_is_opposed_before_any_call(backend: Backend) -> None:
    opposed, other = fiction(40), fiction(41)

    async def scenario() -> tuple[bool, bool, list[dict[str, Any]], Any, int]:
        epoch = str(int(OBJECTED.timestamp()))
        async with started(backend, {national(opposed): epoch}) as r:
            state = (r.store.is_opted_out(opposed), r.store.is_opted_out(other),
                     optout_rows(r))
            claim = await r.dialer.dial(contact(r.store, opposed))
            return (*state, claim, len(r.pbx.originates))
    opposed_now, other_now, rows, claim, originates = asyncio.run(scenario())
    assert opposed_now and not other_now
    assert [row["via"] for row in rows] == ["phone-callback"]
    assert str(rows[0]["created_at"]).startswith("2026-11-30")  # when the caller objected
    assert claim.call is None and claim.decision.reason == "opted_out" and originates == 0


def test_a_caller_journaled_mid_run_is_opposed_at_once(backend: Backend) -> None:
    number = fiction(41)

    async def scenario() -> tuple[bool, bool]:
        async with started(backend, {}) as r:
            before = r.store.is_opted_out(number)
            r.pbx.journal_optout(number, int(OBJECTED.timestamp()))
            await r.until(lambda: r.store.is_opted_out(number), timeout=5)
            return before, r.store.is_opted_out(number)
    before, after = asyncio.run(scenario())
    assert (before, after) == (False, True)


def test_a_journal_read_again_writes_each_opposition_once(backend: Backend) -> None:
    number = fiction(40)

    async def scenario() -> tuple[int, int, int]:
        async with started(backend, {number: "1796000000"}) as r:
            logins = r.pbx.logins
            r.pbx.drop()  # the link comes back: reconciled, the journal read again
            await r.until(lambda: r.pbx.logins > logins and sum(
                1 for a in r.pbx.actions if a.get("Action") == "DBGetTree") >= 2, timeout=10)
            await r.until(lambda: not r.dialer.nodes["pbx"].reconciling, timeout=5)
            again = await optout_journal.drain(r.dialer, r.dialer.nodes["pbx"])
            audits = r.store.q("SELECT 1 FROM audit WHERE action = 'optout'")
            return len(optout_rows(r)), len(audits), again
    rows, audits, again = asyncio.run(scenario())
    assert (rows, audits, again) == (1, 1, 0)


class _NoAstDbPbx(FakePbx):
    """An Asterisk older than 16.28, 18.14 and 19.6: no DBGetTree."""

    def _db_tree(self, session: Any, action: dict[str, Any], reply: dict[str, Any]) -> None:
        session.send(reply | {"Response": "Error", "Message": "Invalid/unknown command"})


def test_a_node_that_will_not_show_its_journal_is_told_once_and_the_run_goes_on(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[int, int]:
        with caplog.at_level(logging.WARNING, logger="ivr.campaign.optout_journal"):
            async with started(backend, {fiction(40): "1796000000"}, _NoAstDbPbx) as r:
                await optout_journal.drain(r.dialer, r.dialer.nodes["pbx"])  # asked again
                await r.dialer.dial(contact(r.store, fiction(40)))
                return len(r.pbx.originates), len(optout_rows(r))
    originates, rows = asyncio.run(scenario())
    told = [rec.getMessage() for rec in caplog.records
            if rec.name == "ivr.campaign.optout_journal"]
    assert originates == 1 and rows == 0
    assert len(told) == 1 and "Invalid/unknown command" in told[0]
    assert "16.28, 18.14, 19.6 or later" in told[0] and "`reporting`" in told[0]


def test_journal_numbers_are_read_as_the_callback_route_reads_caller_ids() -> None:
    at = OBJECTED
    entries = [JournaledOptout("0612345678;cpc=ordinary", at),
               JournaledOptout("262692123456", None),   # international without its +
               JournaledOptout("anonymous", at), JournaledOptout("12", at)]
    assert optout_journal.numbers(entries, "FR") == {"+33612345678": at,
                                                     "+262692123456": None}


def test_a_callee_journaled_in_an_outbound_failsafe_is_opposed_by_its_calls_store(
        backend: Backend) -> None:
    number = fiction(40)

    async def scenario() -> tuple[bool, list[dict[str, Any]], int]:
        async with started(backend, {"call/ivr-other-campaign-7-0a0b0c0d": "1796000000"}) as r:
            await r.dialer.dial(contact(r.store, number))
            await r.until(lambda: not r.dialer.inflight)
            (call,) = r.calls()
            before = r.store.is_opted_out(number)
            # The controller died mid-call; the callee pressed 9 in the failsafe's legal mentions.
            r.pbx.journal_optout(f"call/{call['channel_id']}", int(OBJECTED.timestamp()))
            await r.until(lambda: r.store.is_opted_out(number), timeout=5)
            again = await optout_journal.drain(r.dialer, r.dialer.nodes["pbx"])
            rows = [dict(row) for row in r.store.q("SELECT via, campaign FROM optouts")]
            return before, rows, again
    before, rows, again = asyncio.run(scenario())
    # Another store's channel (the first entry) is skipped; this store's call is opposed once.
    assert before is False and again == 0
    assert rows == [{"via": "phone-key", "campaign": "utest"}]


def test_an_entry_the_store_refuses_holds_back_neither_the_others_nor_the_start(
        backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    refused, taken = fiction(40), fiction(41)

    def refuse_one(store: Any) -> None:
        add = store.add_optout

        def add_optout(number: str, *args: Any, **kwargs: Any) -> bool:
            if number == refused:  # as guard_key refuses a real number beside a fiction key
                raise StoreError(f"{number} is a real number and the opposition key sits "
                                 "beside the store")
            return bool(add(number, *args, **kwargs))
        store.add_optout = add_optout

    async def scenario() -> tuple[bool, bool, int]:
        with caplog.at_level(logging.WARNING, logger="ivr.campaign.optout_journal"):
            async with started(backend, {refused: "1796000000", taken: "1796000001"},
                               setup=refuse_one) as r:
                again = await optout_journal.drain(r.dialer, r.dialer.nodes["pbx"])
                return r.store.is_opted_out(refused), r.store.is_opted_out(taken), again
    opposed_refused, opposed_taken, again = asyncio.run(scenario())
    assert (opposed_refused, opposed_taken, again) == (False, True, 0)
    # The journal's own errors: a task of an earlier test's loop that the garbage collector
    # destroys meanwhile logs one too, on asyncio's logger (CI, 2026-12-06)
    errors = [rec.getMessage() for rec in caplog.records
              if rec.levelno == logging.ERROR and rec.name == optout_journal.log.name]
    assert len(errors) == 1 and "refused 1 opposition" in errors[0]
    assert refused not in caplog.text and "<number>" in errors[0]


def test_readings_at_once_oppose_and_audit_each_number_once(backend: Backend) -> None:
    async def scenario() -> tuple[list[int], int]:
        async with started(backend, {}) as r:
            r.pbx.journal[fiction(40)] = "1796000000"
            r.pbx.journal[fiction(41)] = "1796000001"
            ns = r.dialer.nodes["pbx"]
            added = await asyncio.gather(*(optout_journal.drain(r.dialer, ns) for _ in range(4)))
            await r.settled()
            return sorted(added), len(r.store.q("SELECT 1 FROM audit WHERE action = 'optout'"))
    added, audits = asyncio.run(scenario())
    assert added == [0, 0, 0, 2] and audits == 2
