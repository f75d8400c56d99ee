"""The 'why nobody is called' line (hw4 finding 6), on both backends: (a) a run stopped with
contacts still due says so (the CLI's last line read `nobody can be called now: ` with no
reason after a console Stop); (b) its example is the soonest contact, so its time is the
`next allowed` the console shows beside it (contacts in Pacific/Noumea and
America/Guadeloupe, /tmp/hw4/tz.csv: the line said 14:00 UTC, the field 03:00 UTC)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from conftest import Backend, add_contact, make_config
from ivr.campaign.planning import plan
from ivr.campaign.why import why_nobody
from ivr.store import Store
from ivr.telephony.fake_pbx import answer
from ivr.web.service import PlanCache
from test_dialer import fiction, rig
from test_run_control import say, start_run
from test_run_loop import stamp_originates

# Friday 2026-12-04 02:00 UTC: 13:00 in Nouméa (the lunch break, open again at 14:00 = 03:00
# UTC), Thursday 22:00 in Guadeloupe (open again at Friday 10:00 = 14:00 UTC).
AT = datetime(2026, 12, 4, 2, tzinfo=timezone.utc)
# Tuesday 2026-12-01 11:00 in Paris: inside the default windows
OPEN = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def _cfg() -> Any:
    return make_config(campaign={"name": "c1", "caller_id": "+33199000000"})


def test_the_example_is_the_soonest_contact_as_next_allowed_is(store: Store) -> None:
    # the later zone first in id order: the example was the first waiting contact
    add_contact(store, "+33199009911", at=OPEN, timezone="America/Guadeloupe")
    add_contact(store, "+33199009910", at=OPEN, timezone="Pacific/Noumea")
    why, next_allowed, _ = PlanCache().why(_cfg(), store, "c1", AT)  # the console's pair
    assert next_allowed == "2026-12-04T03:00:00+00:00"
    assert why.startswith("nobody can be called now: 2 outside window (fri 2026-12-04 13:00 "
                          "Pacific/Noumea is outside")
    assert why.endswith("next allowed 2026-12-04 03:00 UTC)")
    assert "14:00 UTC" not in why


def test_a_plan_with_contacts_due_says_the_run_stopped_before_them(store: Store) -> None:
    for i in range(3):
        add_contact(store, f"+3319900991{i}", at=OPEN)
    p = plan(_cfg(), store, OPEN)
    assert len(p.due) == 3 and not p.waiting
    assert why_nobody(store, p, "c1") == "the run stopped with 3 contact(s) still due, not called"


def test_a_console_stop_ends_the_run_saying_who_is_still_due(backend: Backend) -> None:
    """6 contacts, the console's Stop at the 2nd call: the run's last line (the CLI prints
    `run operator: 2 call(s) placed; <why>`) says 4 are still due."""
    numbers = [fiction(i) for i in range(6)]

    async def scenario() -> Any:
        async with rig(backend, {n: answer(["1"], prompt_s=0.5) for n in numbers},
                       max_concurrent=2) as r:
            stamp_originates(r, lambda n: say(backend, desired="stopped") if n == 2 else None)
            task, _ = await start_run(r)
            return await asyncio.wait_for(task, 30)
    report = asyncio.run(scenario())
    assert report.stopped_by == "operator" and report.originated == 2
    assert report.why == "the run stopped with 4 contact(s) still due, not called"
