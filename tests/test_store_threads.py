"""A remote store's calls run in their own threads, not asyncio's default executor: that one
also resolves host names (httpx's webhook deliveries), and a resolver that never answers held
its threads 10-30 s each, so a console's Stop, read every 0.5 s, waited up to 24 s behind
them (found by a review, on PostgreSQL with an unresolvable webhooks.url)."""
from __future__ import annotations

import ast
import asyncio
import contextvars
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ivr.store import workers
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
    its own in anyio's threads, in its own process); in_store_thread itself uses no executor
    (workers.py: a queue of its own, and the loop's future set from the thread)."""
    found, hops = [], []
    for path in [*(IVR / "campaign").rglob("*.py"), *(IVR / "store").rglob("*.py"),
                 *(IVR / "records").rglob("*.py"), *(IVR / "callflow").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "to_thread", "run_in_executor", "wrap_future"):
                found.append(f"{path.relative_to(IVR)}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "in_store_thread":
                hops.append(str(path.relative_to(IVR)))
    assert found == []
    assert {"campaign/dialer.py", "store/safe_writes.py"} <= set(hops)  # the scan saw them


def test_a_call_raises_in_its_caller_sees_its_context_and_a_cancelled_one_still_ends() -> None:
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag")

    async def scenario() -> tuple[str, list[int], list[object]]:
        with pytest.raises(ZeroDivisionError):
            await in_store_thread(lambda: 1 / 0)
        tag.set("the caller's")
        seen = await in_store_thread(tag.get)
        gate, ran = threading.Event(), []
        task = asyncio.ensure_future(in_store_thread(lambda: (gate.wait(5), ran.append(1))))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(500):  # the call itself runs to its end, then leaves under_way
            if not workers.under_way():
                break
            await asyncio.sleep(0.01)
        return seen, ran, workers.under_way()
    seen, ran, left = asyncio.run(scenario())
    assert seen == "the caller's" and ran == [1] and left == []


# In a fresh interpreter: the threads are the process's, and other tests start some.
THREAD_COUNTS = """
import asyncio, json, threading
from ivr.store import workers
async def main():
    names = set()
    for _ in range(50):  # one after the other: the idle thread takes each
        names.add(await workers.in_store_thread(lambda: threading.current_thread().name))
    sequential = len(workers._threads)
    gate = threading.Event()
    held = [asyncio.ensure_future(workers.in_store_thread(gate.wait, 5))
            for _ in range(3 * workers.THREADS)]
    await asyncio.sleep(0.3)
    peak = len(workers._threads)
    gate.set()
    await asyncio.gather(*held)
    print(json.dumps([sequential, len(names), peak, workers.THREADS]))
asyncio.run(main())
"""


def test_a_thread_starts_only_when_none_is_idle_up_to_the_cap() -> None:
    """Fewer threads contend less for the GIL (workers.py): calls one after the other keep
    to one thread; calls held at once start threads up to THREADS, no more."""
    out = subprocess.run([sys.executable, "-c", THREAD_COUNTS], capture_output=True,
                         text=True, timeout=60, check=True)
    sequential, served_by, peak, cap = json.loads(out.stdout)
    assert (sequential, served_by) == (1, 1)
    assert peak == cap == 8
