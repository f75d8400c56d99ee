"""Benchmark: the web console (issue 15 item 6). Prints one JSON object.

1. `throughput`: a run's call setups per wall second with 50 open consoles ÷ without, side by
   side in one invocation (trials alternate: without, with, with, without, ...). The run is
   bench_capacity's: this process is the controller (app.run_campaign, real dialer, FastAGI,
   SQLite store) driving a fake PBX (ivr/telephony/fake_pbx.py) in a child process over
   loopback; every callee answers at once and presses 1, so the run is CPU-bound on the 2 cores
   and any CPU or store lock the consoles take shows. With consoles, the console (create_app
   served by uvicorn, as `ivr web`) runs in a child process over the same store and another
   child holds 50 SSE streams (/api/campaigns/{c}/events) open for the whole run and counts
   their events. Each pair's ratio (with ÷ without, its two trials back to back) is kept;
   reported: their median and range (the machine's load swings hit single trials; the median
   of --pairs pairs is what is stable). Goal: median ≥ 0.98.
2. `latency`: every page and API call over a store of 100,000 contacts and 300,000 calls, the
   console served by uvicorn in a child process, one client (keep-alive, bearer token): one
   first request per route (`first_ms`, the caches cold), then `--requests` timed ones (10
   for a route whose first answer took over 500 ms: there p99 is the max): p50, p99, max.
   Before each request, untimed, this process collects its own garbage (gc.collect): a
   collection the harness owed from earlier requests no longer lands in a timed one.
   Goal: p99 < 200 ms. report.csv after a commit is timed with httpx (as before) and beside it
   with a lean client (bench/lean_http.py): the server's and the transfer's part, without
   httpx's own ~40 ms of CPU over the 33 MB; and with the clients people use
   (bench/real_clients.py): Debian's chromium (a click on the download link) and curl. Then
   chromium's download of report.csv beside the same bytes served static, in alternating
   pairs (bench/chromium_floor.py): the floor this browser sets on this machine, and the ratio;
   once as chromium asks (zstd), once with gzip alone (what a browser without zstd gets).

Usage (no sandbox, no root):
  python3 bench/bench_web.py                  # both parts
  python3 bench/bench_web.py --part throughput --calls 3000 --concurrent 200 --pairs 10
  python3 bench/bench_web.py --part latency --contacts 100000 --calls-in-store 300000
Not a test: it asserts nothing; the README records its output.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_capacity  # noqa: E402  (the controller-on-a-fake-PBX run)
import bench_ivr  # noqa: E402
import chromium_floor  # noqa: E402  (chromium's report.csv beside the same bytes served static)
import lean_http  # noqa: E402  (report.csv timed with a client that parses next to nothing)
import real_clients  # noqa: E402  (report.csv timed with chromium and curl)
import trace_web  # noqa: E402  (--trace: the server's span and the client's, per request)

from ivr import app  # noqa: E402
from ivr.config import Config, NodeConfig  # noqa: E402
from ivr.prompts.build import build_prompts  # noqa: E402
from ivr.store.base import utc  # noqa: E402
from ivr.web_users import new_token, token_hash  # noqa: E402

CONSOLES = 50
SETTLE_S = 2.0  # before each throughput trial's run, with or without consoles
SLOW_MS, SLOW_REQUESTS = 500.0, 10  # a route whose first answer takes this long: 10 timed
AFTER_COMMIT = "(after a commit)"  # a route name's tail: each request follows a store write
REPORT_CSV = "/api/campaigns/{c}/report.csv"
# report.csv's chromium download beside the same bytes served static, pairs alternating
# (bench/chromium_floor.py): run after the routes, unless --only names none of this
FLOOR = "report.csv: chromium download, the console vs the same bytes served static"
# the same for a browser without zstd: gzip, the coding the console then sends it
FLOOR_GZIP = f"{FLOOR}, gzip"
OUTCOMES = ["message_played", "declined", "no_answer", "busy", "no_input", "machine",
            "opted_out", "hangup_intro"]


# -- shared: the console in a child process --------------------------------------------------------
def bench_cfg(base: Path, concurrent: int) -> Config:
    cfg = bench_ivr.bench_config(base, concurrent)
    # The latency store holds 100,000 numbers (beyond the fiction range): its opposition key
    # outside the store's folder, as the store requires for real numbers.
    key = base.parent / f"{base.name}.optout-key"
    return dataclasses.replace(cfg, pbx=dataclasses.replace(cfg.pbx, mode="external"),
                               store=dataclasses.replace(cfg.store, optout_key_file=str(key)))


def serve_web(base: Path, concurrent: int, port: int) -> None:
    """Child process: the console over base/bench.db, as `ivr web` serves it."""
    import uvicorn

    from ivr.web import create_app
    cfg = bench_cfg(base, concurrent)
    console: Any = create_app(cfg, lambda: app.open_store(cfg), freeze_gc=True)
    if os.environ.get(trace_web.ENV):
        console = trace_web.ServerTrace(console, os.environ[trace_web.ENV])
    uvicorn.run(console, host="127.0.0.1", port=port, log_level="warning")


def start_web(base: Path, concurrent: int, trace: str = "") -> tuple[subprocess.Popen, str]:
    port = bench_capacity.free_port()
    env = {**os.environ, "IVR_WEB_SECRET": "b" * 64, **({trace_web.ENV: trace} if trace else {})}
    proc = subprocess.Popen([sys.executable, __file__, "--serve-web", str(base), str(concurrent),
                             str(port)], env=env)
    return proc, wait_for_console(proc, f"http://127.0.0.1:{port}", 300)


def wait_for_console(proc: subprocess.Popen, url: str, tries: int) -> str:
    """The console's URL once /login answers (0.1 s between tries); SystemExit if it never does."""
    import httpx
    for _ in range(tries):
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the console did not start")


ADMIN, ADMIN_PASSWORD = "bench", "bench-password-1"  # a throwaway store's user


def admin_token(store: Any) -> str:
    from ivr.web_users import hash_password
    now = datetime.now(timezone.utc)
    store.add_user(ADMIN, "admin", hash_password(ADMIN_PASSWORD), now)
    token = new_token()
    store.add_api_token(ADMIN, token_hash(token), now)
    return token


# -- 1. throughput with and without 50 consoles ----------------------------------------------------
async def hold_streams(url: str, token: str, campaign: str, n: int) -> None:
    """Child process: n SSE streams open until stdin closes; 'ready' once each has had an
    event, then the count of events received."""
    import httpx
    events = [0] * n
    ready = asyncio.Event()

    async def one(i: int, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", f"{url}/api/campaigns/{campaign}/events") as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events[i] += 1
                    if all(events):
                        ready.set()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                 timeout=None, limits=httpx.Limits(max_connections=n)) as client:
        tasks = [asyncio.create_task(one(i, client)) for i in range(n)]
        await asyncio.wait_for(ready.wait(), 60)
        print("ready", flush=True)
        counted = sum(events)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(sum(events) - counted, flush=True)
        for t in tasks:
            t.cancel()


def trial(args: argparse.Namespace, base: Path, consoles: bool) -> dict[str, Any]:
    nums = bench_capacity.numbers(args.calls)
    cfg = bench_cfg(base, args.concurrent)
    cfg = dataclasses.replace(cfg, agi=dataclasses.replace(cfg.agi,
                                                           port=bench_capacity.free_port()))
    store = bench_capacity.seed(cfg, nums, 0, "")
    web = clients = None
    if consoles:
        token = admin_token(store)
        web, url = start_web(base, args.concurrent)
        clients = subprocess.Popen([sys.executable, __file__, "--streams", url, token,
                                    cfg.campaign.name, str(CONSOLES)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert clients.stdout is not None and clients.stdout.readline().strip() == "ready"
    # Both arms start alike: the seed's WAL copied back, then a pause in which whatever ran
    # before (the previous trial's teardown, the consoles' start) settles.
    store.checkpoint_wal()
    time.sleep(SETTLE_S)
    pbxes = bench_capacity.start_pbxes(1, 0.0)
    cfg = dataclasses.replace(cfg, pbx=dataclasses.replace(cfg.pbx, nodes=[
        NodeConfig("fake1", "127.0.0.1", pbxes[0][1], "ivr")]))
    try:
        res = app.run(bench_capacity.drive(cfg, store, None))
    finally:
        for p, _ in pbxes:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(10)
        events = 0
        if clients is not None:
            out, _ = clients.communicate("", timeout=30)
            events = int(out.split()[-1])
        if web is not None:
            web.terminate()
            web.wait(10)
    played = store.one("SELECT COUNT(*) AS n FROM calls WHERE outcome = 'message_played'")["n"]
    return {"consoles": CONSOLES if consoles else 0, "settled": played,
            "elapsed_s": round(res["elapsed_s"], 3),
            "setups_per_s": round(played / res["elapsed_s"], 1),
            "events_received": events,
            "events_per_s": round(events / res["elapsed_s"], 1)}


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    (tmp / "warm").mkdir()
    trial(args, tmp / "warm", False)  # imports, first connections, caches: not counted
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for consoles in order:
            base = tmp / f"t{len(trials)}"
            base.mkdir()
            trials.append(trial(args, base, consoles))
    without = [t["setups_per_s"] for t in trials if not t["consoles"]]
    with_ = [t["setups_per_s"] for t in trials if t["consoles"]]
    # Each pair's two trials ran back to back (in alternating order), so a pair's ratio sees
    # the same machine load on both sides; the median of the pairs shrugs off a pair that a
    # load swing (another process on the 2 cores) landed on one side of.
    ratios = sorted(w / o for w, o in zip(with_, without))
    return {"pbx": "fake PBX (ivr/telephony/fake_pbx.py), one child process",
            "calls": args.calls, "concurrent": args.concurrent, "pairs": args.pairs,
            "trials": trials if args.verbose else len(trials),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)]
            if len(ratios) >= 2 else None,
            "ratio_of_means": round(statistics.mean(with_) / statistics.mean(without), 3),
            "pair_ratios": [round(r, 3) for r in ratios], "goal": "median >= 0.98"}


# -- 2. latency over 100,000 contacts and 300,000 calls --------------------------------------------
def seed_big(store: Any, campaign: str, contacts: int, calls: int) -> list[str]:
    """The big store, written directly (seeding through the import would take minutes):
    `contacts` numbers bound to the campaign (a tenth still pending), `calls` attempts over
    the last ten days spread across the hours, a consent for each message played."""
    now = datetime.now(timezone.utc)
    ts = utc(now)
    nums = [f"+331{90000000 + i:08d}" for i in range(contacts)]
    conn = store.db.conn
    with store.transaction():
        conn.executemany(
            "INSERT INTO contacts (number, source, basis, status, created_at, updated_at) "
            "VALUES (?, ?, 'consent', ?, ?, ?)",
            ((n, f"list{i % 5}", "pending" if i % 10 == 0 else "done", ts, ts)
             for i, n in enumerate(nums)))
        conn.execute(
            "INSERT INTO campaign_contacts (contact_id, campaign, source, basis, status, "
            "bound_at) SELECT id, ?, source, basis, status, ? FROM contacts", (campaign, ts))

        def rows() -> Any:
            for i in range(calls):
                cid = i % contacts + 1
                at = utc(now - timedelta(minutes=(calls - i) * 14400 / calls))
                yield (cid, nums[cid - 1], i // contacts + 1, campaign, at, at,
                       OUTCOMES[i % len(OUTCOMES)], "1" if i % len(OUTCOMES) == 0 else "")
        conn.executemany(
            "INSERT INTO calls (contact_id, number, attempt, campaign, state, started_at, "
            "ended_at, outcome, keys, node) VALUES (?, ?, ?, ?, 'ended', ?, ?, ?, ?, 'pbx')",
            rows())
        conn.execute(
            "INSERT INTO consents (call_id, contact_id, number, kind, key, at, campaign) "
            "SELECT id, contact_id, number, 'consent', '1', started_at, campaign FROM calls "
            "WHERE outcome = 'message_played'")
    return nums


def routes(c: str, nums: list[str]) -> list[tuple[str, str, Any]]:
    """(name, method path, body maker(i)) for every page and API call."""
    n = nums[7]
    get = [f"/c/{c}/{s}" for s in ("overview", "run", "contacts", "prompts", "reports")] + [
        f"/c/{c}/rights", f"/c/{c}/rights?number={n}", f"/c/{c}/rights/export?number={n}",
        "/api/campaigns", f"/api/campaigns/{c}/overview", f"/api/campaigns/{c}/preflight",
        f"/api/campaigns/{c}/contacts", f"/api/campaigns/{c}/contacts?offset=50000",
        f"/api/campaigns/{c}/report.json", f"/api/campaigns/{c}/report.csv",
        f"/api/campaigns/{c}/prompts", f"/api/campaigns/{c}/prompts/intro/audio",
        f"/api/optouts/{n}", f"/api/numbers/{n}/consent", f"/api/numbers/{n}/export",
        "/api/audit", "/api/users", "/api/openapi.json", "/login"]
    out: list[tuple[str, str, Any]] = [(f"GET {p}", p, None) for p in get]
    # The report while a run writes: each timed request follows a commit (AFTER_COMMIT).
    out.append((f"GET /api/campaigns/{c}/report.json {AFTER_COMMIT}",
                f"/api/campaigns/{c}/report.json", None))
    # report.csv while a run writes: each timed request follows a commit to a recent call (the
    # console renders again only that call's block of 8,192; cache.KeptBlocks).
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT}",
                f"/api/campaigns/{c}/report.csv", None))
    # The same as a script asks for it (no Accept-Encoding: gzip): 33 MB over HTTP, not ~3.
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, identity)",
                f"/api/campaigns/{c}/report.csv",
                lambda i: {"headers": {"Accept-Encoding": "identity"}}))
    # The gzip download read but not decoded: the server's and HTTP's part (the client's
    # gunzip of 37 MB is the difference).
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, gzip not decoded)",
                f"/api/campaigns/{c}/report.csv", None))
    # The same two downloads timed with bench/lean_http.py (recv_into one buffer, the framing
    # checked once at the end; a new connection each time) beside httpx's: httpx parses the
    # 33 MB in Python (~40 ms of CPU), so these time the server and the transfer.
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, identity, lean client)",
                f"/api/campaigns/{c}/report.csv",
                lambda i: {"headers": {"Accept-Encoding": "identity"}}))
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, gzip not decoded, "
                "lean client)", f"/api/campaigns/{c}/report.csv",
                lambda i: {"headers": {"Accept-Encoding": "gzip"}}))
    # The clients an operator and a script use (bench/real_clients.py), beside httpx's:
    # Debian's chromium (the operator's click on the download link, until the file is on disk)
    # and curl (its own time_total), each after a commit as above.
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, curl --compressed)",
                f"/api/campaigns/{c}/report.csv", None))
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, identity, curl)",
                f"/api/campaigns/{c}/report.csv", None))
    # Last of the downloads (the browser is closed after its route). chromium asks for zstd
    # (as it does), then for gzip alone (its Accept-Encoding replaced): the two codings side
    # by side in one run.
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, chromium download)",
                f"/api/campaigns/{c}/report.csv", None))
    out.append((f"GET /api/campaigns/{c}/report.csv {AFTER_COMMIT[:-1]}, chromium download, "
                "gzip)", f"/api/campaigns/{c}/report.csv",
                lambda i: {"headers": {"Accept-Encoding": "gzip, deflate"}}))
    # Streamed: the whole download above, and how soon it starts.
    out.append((f"GET /api/campaigns/{c}/report.csv (first byte)",
                f"/api/campaigns/{c}/report.csv", None))
    out += [
        ("POST control", f"/api/campaigns/{c}/control",
         lambda i: {"json": {"action": "pause" if i % 2 else "resume"}}),
        ("POST pacing", f"/api/campaigns/{c}/pacing",
         lambda i: {"json": {"max_concurrent": 10 + i % 5}}),
        ("POST optouts", "/api/optouts",
         lambda i: {"json": {"number": nums[len(nums) // 2 + i], "via": "post"}}),
        ("POST erase", "/api/numbers/{n}/erase", None),  # a different number each time
        ("POST contacts (3-line CSV)", f"/api/campaigns/{c}/contacts",
         lambda i: {"files": {"file": ("l.csv", f"number\n+3319800{i:04d}\n+3319801{i:04d}\n"
                                       "bad\n")}, "data": {"source": f"up{i}",
                                                         "basis": "consent"}}),
    ]
    return out


def timed(client: Any, method: str, path: str, kw: dict[str, Any],
          first_byte: bool = False, raw: bool = False) -> float:
    """Milliseconds to the whole body read (or to its first bytes: a streamed download; or
    read `raw`, as it crossed HTTP, not decoded)."""
    t0 = time.perf_counter()
    with client.stream(method, path, **kw) as r:
        if first_byte:
            next(r.iter_raw(), b"")
        elif raw:
            for _ in r.iter_raw():
                pass
        else:
            r.read()
        dt = (time.perf_counter() - t0) * 1000
        if r.status_code >= 400:
            r.read()
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:200]}")
    return dt


def route_latency(client: Any, args: argparse.Namespace, name: str, path: str, body: Any,
                  nums: list[str], store: Any,
                  tracer: trace_web.ClientTrace | None = None) -> dict[str, float]:
    """One first request, then the timed ones (fewer for a slow route); nearest-rank p99.
    An AFTER_COMMIT route: before each request (untimed) this process's own store connection
    commits a write (one call's hangup cause), so the console's report cache is always cold,
    as during a run that commits every call: report.json's to an old call, report.csv's to
    one of the last calls (a run writes its latest calls)."""
    method = name.split()[0]
    after = AFTER_COMMIT[:-1] in name  # "(after a commit)", "(after a commit, identity)"
    recent = store.last_call_id() if "report.csv" in name and after else 0

    def once(i: int) -> float:
        if after:
            store.set_hangup_cause(recent - i if recent else 1 + i, "16" if i % 2 else "17")
        p, kw = path, body(i) if body else {}
        if "erase" in name:  # a different number each time, typed again to confirm
            p, kw = path.replace("{n}", nums[-1 - i]), {"json": {"confirm": nums[-1 - i]}}
        # Outside the timed span: the harness's own garbage (100 downloads of 37.7 MB held
        # and dropped) collected, so a collection it owes from earlier requests does not land
        # in this one (a traced chromium download waited 35 ms on the harness's gen2 pass, not
        # on chromium). One the request's own allocations start still counts, as in a script.
        gc.collect()
        if tracer is not None and i:  # outside the timed span; the first request not traced
            tracer.before()
        if "lean client" in name:
            ms = lean_http.timed(client, p, kw["headers"])
        elif "chromium download" in name:
            ms = real_clients_browser(client, p).download(
                p, kw.get("headers", {}).get("Accept-Encoding"))
        elif "curl" in name:
            ms = real_clients.curl_timed(str(client.base_url).rstrip("/"), p,
                                         client.headers["Authorization"].split()[1],
                                         compressed="compressed" in name)
        else:
            ms = timed(client, method, p, kw, first_byte="first byte" in name,
                       raw="not decoded" in name)
        if tracer is not None and i:
            tracer.after(name, ms)
        return ms
    first = once(0)
    n = args.requests if first < SLOW_MS else SLOW_REQUESTS
    q = trace_web.quantiles([once(i) for i in range(1, n + 1)])
    out = {"first_ms": round(first, 1), "timed": n,
           "p50_ms": q["p50"], "p99_ms": q["p99"], "max_ms": q["max"]}
    if "chromium" in name:  # what the browser saved (untimed): decoded by it
        out.update(real_clients_browser(client).last)
        # What crossed HTTP for it: its Accept-Encoding, as a browser (Sec-Fetch-Mode).
        ae = (body(0) if body else {}).get("headers", {}).get("Accept-Encoding",
                                                              real_clients.ACCEPT_ENCODING)
        wire, headers = chromium_floor.captured(client, path, ae)
        out["encoding"] = headers.get("content-encoding", "identity")
        out["wire_bytes"] = len(wire)
    elif "curl" in name:
        pass  # curl's bytes are httpx's of the same encoding, printed on those routes
    elif "report.csv" in name and "first byte" not in name and "not decoded" not in name:  # what crossed HTTP (untimed)
        with client.stream(method, path, **(body(0) if body else {})) as r:
            r.read()
            out["encoding"] = r.headers.get("content-encoding", "identity")
            out["wire_bytes"], out["body_bytes"] = r.num_bytes_downloaded, len(r.content)
    return out


_browsers: dict[str, real_clients.Browser] = {}


def real_clients_browser(client: Any, path: str = "") -> real_clients.Browser:
    """One chromium, opened at the first route that asks for it, and its download manager
    warmed up by one download of report.json beside `path` (untimed: its first download took
    0.6-1 s; not report.csv itself, whose first timed download must follow a commit)."""
    if "b" not in _browsers:
        _browsers["b"] = real_clients.Browser(str(client.base_url).rstrip("/"),
                                              (ADMIN, ADMIN_PASSWORD))
        _browsers["b"].download(path.replace("report.csv", "report.json"))
    return _browsers["b"]


def close_browser() -> None:
    if _browsers:
        _browsers.pop("b").close()


def latency(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import httpx
    cfg = bench_cfg(tmp, 50)
    build_prompts(cfg)
    store = app.open_store(cfg)
    t0 = time.monotonic()
    nums = seed_big(store, cfg.campaign.name, args.contacts, args.calls_in_store)
    seeded_s = time.monotonic() - t0
    token = admin_token(store)
    trace = str(tmp / "server-trace.jsonl") if args.trace else ""
    tracer = trace_web.ClientTrace() if args.trace else None
    web, url = start_web(tmp, 50, trace)
    results: dict[str, Any] = {}
    floor: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as client:
            for name, path, body in routes(cfg.campaign.name, nums):
                if args.only and args.only not in name:
                    continue
                results[name] = route_latency(client, args, name, path, body, nums, store,
                                              tracer if "report.csv" in name
                                              and "first byte" not in name else None)
                close_browser()  # chromium stays out of the routes after its own
            csv_path = REPORT_CSV.format(c=cfg.campaign.name)
            for key, ae in ((FLOOR, None), (FLOOR_GZIP, "gzip, deflate")):
                if not args.only or args.only in key:
                    floor[key] = chromium_floor.side_by_side(
                        client, real_clients_browser(client, csv_path), csv_path, store,
                        args.requests, ae)
    finally:
        close_browser()
        web.terminate()
        web.wait(10)
    over = sorted(k for k, v in results.items() if v["p99_ms"] >= 200)
    traced = {"trace": trace_web.report(tracer, trace)} if tracer is not None else {}
    return {**traced, "contacts": args.contacts, "calls": args.calls_in_store,
            "seeded_in_s": round(seeded_s, 1), "requests_per_route": args.requests,
            "routes": results, "goal": "p99 < 200 ms", "p99_at_or_over_200ms": over,
            **floor}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["both", "throughput", "latency"], default="both")
    parser.add_argument("--calls", type=int, default=3000, help="calls per throughput trial")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=10,
                        help="trial pairs (without/with consoles, order alternating)")
    parser.add_argument("--verbose", action="store_true", help="every trial's figures")
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--calls-in-store", type=int, default=300_000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests per route")
    parser.add_argument("--only", default="", help="only the routes whose name holds this")
    parser.add_argument("--trace", action="store_true",
                        help="report.csv: the server's span and the client's CPU per request")
    parser.add_argument("--serve-pbx", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-web", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--streams", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pbx is not None:
        return asyncio.run(bench_capacity.serve_pbx(args.serve_pbx))
    if args.serve_web:
        return serve_web(Path(args.serve_web[0]), int(args.serve_web[1]),
                         int(args.serve_web[2]))
    if args.streams:
        url, token, campaign, n = args.streams
        return asyncio.run(hold_streams(url, token, campaign, int(n)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 16384), max(hard, 16384)))
    os.environ["IVR_AMI_SECRET"] = bench_capacity.SECRET
    os.environ.setdefault("IVR_CALLBACK_SECRET", bench_capacity.SECRET)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("both", "throughput"):
            (Path(tmp) / "thr").mkdir()
            out["throughput"] = throughput(args, Path(tmp) / "thr")
        if args.part in ("both", "latency"):
            (Path(tmp) / "lat").mkdir()
            out["latency"] = latency(args, Path(tmp) / "lat")
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
