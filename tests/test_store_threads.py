"""A remote store's calls run in their own threads, not asyncio's default executor: that one
also resolves host names (httpx's webhook deliveries), and a resolver that never answers held
its threads 10-30 s each, so a console's Stop, read every 0.5 s, waited up to 24 s behind
them (found by a review, on PostgreSQL with an unresolvable webhooks.url)."""
from __future__ import annotations

import ast
import asyncio
import threading
import time
from pathlib import Path

from ivr.store.workers import in_store_thread

IVR = Path(__file__).resolve().parents[1] / "ivr"


def test_a_store_call_is_not_held_behind_a_full_default_executor() -> None:
    async def scenario() -> tuple[int, float, str]:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        # More than the default executor's threads, each stuck as a lookup with no answer.
        stuck = [loop.run_in_executor(None, gate.wait, 30) for _ in range(40)]
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        try:
            got = await asyncio.wait_for(
                in_store_thread(lambda: (42, threading.current_thread().name)), 5)
        finally:
            gate.set()
            await asyncio.gather(*stuck)
        return got[0], time.monotonic() - t0, got[1]
    value, took, thread = asyncio.run(scenario())
    assert value == 42 and took < 1.0 and thread.startswith("ivr-store")


def test_the_run_and_the_store_use_no_default_executor() -> None:
    """Every store call off the loop of a run goes through in_store_thread (the console runs
    its own in anyio's threads, in its own process)."""
    found = []
    for path in [*(IVR / "campaign").rglob("*.py"), *(IVR / "store").rglob("*.py"),
                 *(IVR / "records").rglob("*.py"), *(IVR / "callflow").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "to_thread", "run_in_executor", "wrap_future"):
                found.append(f"{path.relative_to(IVR)}:{node.lineno}")
    assert found and all(f.startswith("store/workers.py:") for f in found), found
