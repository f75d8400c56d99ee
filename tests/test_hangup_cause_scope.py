"""Issue 18: a run writes a hangup cause only on its own campaign's attempts. Hangup events
reach every run that shares the PBX, so run A also sees the end of run B's channels; written
by channel id alone, A's view of the cause would land on B's row."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from conftest import Backend
from conftest import add_contact, attempt
from ivr.store import Store
from ivr.telephony.fake_pbx import answer
from ivr.telephony.node import ChannelHangup
from test_dialer import fiction, rig

NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def _cause(store: Store, call_id: int) -> str | None:
    row = store.call(call_id)
    assert row is not None
    return row["hangup_cause"]


def test_the_cause_is_written_on_the_named_campaigns_attempt_only() -> None:
    s = Store.memory()
    a = attempt(s, add_contact(s, "+33162000010", at=NOW, campaigns=("A",)), "A",
                "+33162000000", NOW, "pbx")
    b = attempt(s, add_contact(s, "+33162000011", at=NOW, campaigns=("B",)), "B",
                "+33162000000", NOW, "pbx")
    s.set_hangup_cause_by_channel(b["channel_id"], "21", "A")  # A's run saw B's channel end
    assert _cause(s, b["id"]) is None and _cause(s, a["id"]) is None
    s.set_hangup_cause_by_channel(b["channel_id"], "16", "B")
    s.set_hangup_cause_by_channel(a["channel_id"], "17", "A")
    assert (_cause(s, a["id"]), _cause(s, b["id"])) == ("17", "16")
    s.set_hangup_cause_by_channel(a["channel_id"], "21", "B")  # and the other way round
    assert _cause(s, a["id"]) == "17"


def test_a_runs_dialer_leaves_another_campaigns_settled_call_alone(backend: Backend) -> None:
    """The dialer of campaign utest gets the Hangup of campaign other's channel (same store,
    same node, already settled by other's IVR): other's row keeps its cause. Its own settled
    call's late Hangup is still written."""
    mine, theirs = fiction(10), fiction(11)
    ids: dict[str, int] = {}

    def other_campaigns_call(store: Store) -> None:
        row = add_contact(store, theirs, at=NOW, campaigns=("other",))
        call = attempt(store, row, "other", "+33199000000", NOW, "pbx")
        store.finish_unanswered(call["id"], "busy", "17", NOW, None)
        ids["theirs"] = call["id"]

    async def scenario() -> tuple[Store, dict[str, str]]:
        async with rig(backend, {mine: answer(), theirs: answer()}, numbers=[mine],
                       setup=other_campaigns_call) as r:
            await r.dialer.dial(r.store.one("SELECT * FROM contacts WHERE number = ?",
                                            (mine,)))
            await r.until(lambda: not r.dialer.inflight and any(
                c["outcome"] for c in r.calls() if c["campaign"] == "utest"))
            channels = {c["campaign"]: c["channel_id"] for c in r.calls()}
            for campaign, channel in channels.items():  # the late Hangups, after settling
                r.dialer.on_event(ChannelHangup(node="pbx", channel_id=channel, cause=21))
            await r.settled()
            return r.store, channels
    store, channels = asyncio.run(scenario())
    assert _cause(store, ids["theirs"]) == "17"
    mine_row = store.one("SELECT * FROM calls WHERE campaign = 'utest'")
    assert mine_row is not None and mine_row["channel_id"] == channels["utest"]
    assert mine_row["hangup_cause"] == "21"
