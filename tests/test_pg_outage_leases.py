"""PostgreSQL away for longer than the leases, then back (issue 14): no controller could beat
meanwhile, so every lease looked expired when the server came back. The first controller whose
orphan sweep ran before the others' heartbeats reconnected (each retries every second) took
them for dead and settled their live calls as `orphaned`, and its peer_load showed no live
controller (each computed its share of the caps as if alone). A controller's own return now
counts as a beat of every other (pg_controllers.LEASE_END); a controller that stays dead is
still judged so, one lease after that return."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import psycopg
from ivr.store.base import RunOwner
from ivr.store.pg import PgStore

from test_pg_store import KEY, add, claim, own_cluster  # noqa: F401 (own_cluster: a fixture)

LEASE_S = 3.0  # short, so that the outage outlives it in a few seconds


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _seen_by(b: PgStore) -> tuple[list[int], set[str]] | None:
    """B's orphaned attempts of c1 and the live controllers of its peer_load; None while the
    store still refuses B (its pool reconnecting)."""
    try:
        orphans = [int(r["id"]) for r in b.orphaned_calls("c1", _now())]
        return orphans, {str(r["controller"]) for r in b.peer_load("c1")}
    except Exception:  # noqa: BLE001 - the server coming back: tried again
        return None


def test_a_live_controller_is_never_taken_for_dead_after_an_outage(own_cluster: Any) -> None:
    a = PgStore.open(own_cluster.url, optout_key=KEY, lease_s=LEASE_S, connect_timeout_s=2)
    b = PgStore.open(own_cluster.url, optout_key=KEY, lease_s=LEASE_S, connect_timeout_s=2)
    try:
        with a.hold_run(RunOwner.this_process(_now()), "c1"), \
                b.hold_run(RunOwner.this_process(_now()), "c1"):
            call = int(claim(a, add(a, "+33199000501")).call["id"])
            assert _seen_by(b) == ([], {a.controller_id, b.controller_id})
            own_cluster.down()
            time.sleep(2 * LEASE_S)  # every heartbeat is now older than its lease
            own_cluster.up()
            # A's heartbeat comes back a second and a half after B's: B's own return must not
            # make it judge A, whose beat is older than its lease, dead meanwhile.
            a_back_after = time.monotonic() + 1.5
            reconnect = a._beat._connect if a._beat else None

            def later() -> Any:
                if time.monotonic() < a_back_after:
                    raise psycopg.OperationalError("held back by the test")
                assert reconnect is not None
                return reconnect()
            if a._beat:
                a._beat._connect = later  # type: ignore[method-assign]
            seen = []
            beats = a._beat.beats if a._beat else 0
            end = time.monotonic() + 20
            # From the server's return until A has beaten again and B's own beat is back.
            while time.monotonic() < end and not (
                    a._beat and a._beat.beats > beats and b._beat and b._beat.back_at):
                seen.append(_seen_by(b))
                time.sleep(0.05)
            answered = [s for s in seen if s is not None]
            assert answered, seen  # B read the store meanwhile: the window was looked at
            assert all(call not in orphans for orphans, _ in answered), answered
            assert all(a.controller_id in live for _, live in answered), answered
            # A dies now (its heartbeat stops): B still judges it dead, a lease after B's
            # own return at most (plus a beat), as it would with no outage before.
            assert a._beat is not None
            a._beat.stopping.set()
            a._beat.join(LEASE_S)
            deadline = time.monotonic() + 4 * LEASE_S
            while time.monotonic() < deadline and (_seen_by(b) or ([], set()))[0] != [call]:
                time.sleep(0.1)
            assert (_seen_by(b) or ([], set()))[0] == [call]
    finally:
        a.close()
        b.close()
