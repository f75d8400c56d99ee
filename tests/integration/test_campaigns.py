"""Issue 18 item 5: campaigns side by side on one store and the sandbox PBX, through the real
`ivr` command (two `ivr run` processes at once).

What each callee heard is read on Asterisk's side: the sandbox's monitor AMI user reports
every AGI command Asterisk runs (AGIExecStart), so each channel's STREAM FILE names the file
Asterisk played; the test hashes that file on disk inside the sandbox root.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import shutil
import sqlite3
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr import app, config
from ivr.prompts.install import install_prompts_to_pbx
from ivr.config import Config
from ivr.prompts.archive import archive_dir
from ivr.prompts.build import MANIFEST_NAME
from ivr.store.base import parse_utc
from ivr.telephony.ami import Ami
from ivr.telephony.contract import SOUNDS_DIR, campaign_sound_dir, prompt_sound
from ivr.telephony.sandbox import Sandbox

from .conftest import LEGAL, TEXTS, itest_config_dict

RUN_TIMEOUT_S = 240
# Keys pressed by the simulated callees (README): 10 presses 1, 20 presses 2, 30 stays silent.
OUTCOMES = {"10": "message_played", "20": "declined", "30": "no_input"}


# -- campaigns -------------------------------------------------------------------------------
@dataclass
class Campaign:
    name: str
    cfg_file: Path
    data: dict[str, Any]

    @property
    def store(self) -> Path:
        return Path(self.data["store"]["path"])

    @property
    def build_dir(self) -> Path:
        return Path(self.data["prompts"]["build_dir"])

    def manifest(self) -> dict[str, str]:
        """prompt key -> sha256 of the last build."""
        data = json.loads((self.build_dir / MANIFEST_NAME).read_text())
        return {k: v["sha256"] for k, v in data["prompts"].items()}

    def write(self) -> None:
        self.cfg_file.write_text(yaml.safe_dump(self.data, allow_unicode=True))


def campaign(base: Path, label: str, sender: str, port: int, store: Path,
             **flow: Any) -> Campaign:
    """A campaign of its own: name, candidate (so every prompt's text), agi.port, build dir;
    the store is shared. A random part in the name gives it a fresh sounds folder."""
    name = f"Législatives {label} {secrets.token_hex(3)}"
    email = f"stop@{sender.split()[-1].lower()}.example.fr"
    data = itest_config_dict(base, agi__port=port)
    data["campaign"]["name"] = name
    data["legal"] = {**LEGAL, "sender": sender, "email": email}
    data["prompts"]["build_dir"] = str(base / f"build-{label}")
    data["prompts"]["items"] = {
        k: {"text": v.replace("Marie Dupont", sender).replace(LEGAL["email"], email)}
        for k, v in TEXTS.items()}
    data["store"]["path"] = str(store)
    data["dialer"].update(max_concurrent=6, amd=False)
    data["flow"].update(flow)
    c = Campaign(name, base / f"{label}.yaml", data)
    c.write()
    return c


async def ivr(c: Campaign, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "ivr", "--config", str(c.cfg_file), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"ivr {' '.join(args)} did not end within {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def import_list(c: Campaign, block: str, suffixes: list[str]) -> list[str]:
    """The campaign's own list (the ARCEP fiction range), imported with its config."""
    numbers = [f"+3319900{block}{s}" for s in suffixes]
    path = c.cfg_file.with_name(f"list-{block}.csv")
    path.write_text("number\n" + "".join(f"{n}\n" for n in numbers))
    rc, _, err = await ivr(c, "contacts", "import", str(path), "--source", f"list-{block}",
                           "--basis", "consent")
    assert rc == 0, err
    return numbers


# -- what Asterisk played ------------------------------------------------------------------------
@dataclass
class Played:
    """STREAM FILE and GET OPTION commands as Asterisk reports them, per channel (Uniqueid = calls.channel_id
    of the IVR side), with the monotonic time each was seen."""
    ami: Ami
    by_channel: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def watch(cls, cfg: Config) -> "Played":
        ami = Ami(cfg.pbx.host, cfg.pbx.port, Sandbox(cfg).monitor_user, app.ami_secret(cfg),
                  events=("AGIExecStart",))
        await ami.connect()
        played = cls(ami)
        played.task = asyncio.create_task(played._read())
        return played

    async def _read(self) -> None:
        async for ev in self.ami.events():
            words = shlex.split(str(ev.get("Command", "")))
            if len(words) >= 3 and " ".join(words[:2]).upper() in ("STREAM FILE", "GET OPTION"):
                self.by_channel.setdefault(str(ev.get("Uniqueid")), []).append(
                    (time.monotonic(), words[2]))

    def of(self, channel: str, key: str) -> list[tuple[float, str]]:
        return [(t, s) for t, s in self.by_channel.get(channel, [])
                if Path(s).name.rsplit("-", 1)[0] == key]

    def close(self) -> None:
        self.ami.close()
        if self.task is not None:
            self.task.cancel()


def sounds(cfg: Config) -> Path:
    return Sandbox(cfg).sounds


def file_sha(cfg: Config, sound: str) -> str:
    """The sha256 of the file Asterisk plays for `sound` (it adds the .wav itself)."""
    return hashlib.sha256((sounds(cfg) / f"{sound}.wav").read_bytes()).hexdigest()


# -- the store ------------------------------------------------------------------------------
def rows(store: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    db = sqlite3.connect(store)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def heard(store: Path, call: dict[str, Any]) -> dict[str, str]:
    """What the attempt says the person heard: calls.prompts_sha256 (prompts played to the
    end) and the consent's heard_sha256 (with the prompt a key cut)."""
    out = json.loads(call["prompts_sha256"])
    for c in rows(store, "SELECT heard_sha256 FROM consents WHERE call_id = ?", call["id"]):
        out.update(json.loads(c["heard_sha256"]))
    return out


def check_heard_is_played(cfg: Config, played: Played, store: Path,
                          call: dict[str, Any]) -> None:
    """Every version the attempt records is the file Asterisk played on its channel."""
    recorded = heard(store, call)
    assert "intro" in recorded, call
    for key, sha in recorded.items():
        files = {file_sha(cfg, s) for _, s in played.of(call["channel_id"], key)}
        assert files == {sha}, (call["number"], key, files, sha)


@pytest.fixture
def pbx(pbx_cfg: Config) -> Any:
    """The sandbox, and afterwards: the test campaigns' sounds folders removed, and the plain
    ivr/<key>.wav copies (every install rewrites them) put back for the other tests."""
    made: list[str] = []
    yield pbx_cfg, made
    for name in made:
        shutil.rmtree(sounds(pbx_cfg) / SOUNDS_DIR / campaign_sound_dir(name),
                      ignore_errors=True)
    install_prompts_to_pbx(pbx_cfg)


# -- two campaigns at once ----------------------------------------------------------------------
async def two_runs(cfg: Config, a: Campaign, b: Campaign) -> tuple[list, Played]:
    played = await Played.watch(cfg)
    try:
        results = await asyncio.gather(ivr(a, "run", timeout=RUN_TIMEOUT_S),
                                       ivr(b, "run", timeout=RUN_TIMEOUT_S))
        await asyncio.sleep(1.0)  # the last AMI events
    finally:
        played.close()
    return list(results), played


def test_two_campaigns_side_by_side_each_callee_hears_its_own(pbx: Any,
                                                              tmp_path: Path) -> None:
    cfg, made = pbx
    store = tmp_path / "shared.db"
    a = campaign(tmp_path, "A", "Marie Dupont", 4622, store)
    b = campaign(tmp_path, "B", "Jean Martin", 4623, store)
    made += [a.name, b.name]

    async def scenario() -> tuple[dict[str, list[str]], list, Played]:
        lists = {a.name: await import_list(a, "61", list(OUTCOMES)),
                 b.name: await import_list(b, "62", list(OUTCOMES))}
        for c in (a, b):
            rc, _, err = await ivr(c, "prompts", "build")
            assert rc == 0 and "not installed" not in err, err
        results, played = await two_runs(cfg, a, b)
        return lists, results, played
    lists, results, played = asyncio.run(scenario())
    for rc, out, err in results:  # both end by themselves, having called their list
        assert rc == 0 and "run finished: 3 call(s) placed" in out, (out, err)

    intro = {c.name: c.manifest()["intro"] for c in (a, b)}
    assert intro[a.name] != intro[b.name]
    calls = rows(store, "SELECT * FROM calls ORDER BY id")
    assert len(calls) == 6
    spans = {}
    for c in (a, b):
        mine = [k for k in calls if k["campaign"] == c.name]
        # nobody is called by the other campaign: each called exactly its own list
        assert sorted(k["number"] for k in mine) == sorted(lists[c.name])
        bound = rows(store, "SELECT contact_id, campaign FROM campaign_contacts WHERE "
                     "contact_id IN (%s)" % ",".join(str(k["contact_id"]) for k in mine))
        assert {r["campaign"] for r in bound} == {c.name}
        spans[c.name] = (min(k["started_at"] for k in mine), max(k["ended_at"] for k in mine))
        folder = f"{SOUNDS_DIR}/{campaign_sound_dir(c.name)}/"
        for k in mine:
            assert k["outcome"] == OUTCOMES[k["number"][-2:]], k
            streams = [s for _, s in played.by_channel.get(k["channel_id"], [])]
            assert streams and all(s.startswith(folder) for s in streams), (k["number"], streams)
            intros = played.of(k["channel_id"], "intro")
            # the callee heard this campaign's intro, by the hash of the file Asterisk played
            assert intros and {file_sha(cfg, s) for _, s in intros} == {intro[c.name]}
            check_heard_is_played(cfg, played, store, k)
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, spans  # the two runs' calls overlapped in time


# -- a rebuild during a run -------------------------------------------------------------------
async def when(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def run_with(cfg: Config, c: Campaign,
                   meanwhile: Callable[[Played], Awaitable[Any]]) -> tuple[Any, Any, Played]:
    """`ivr run` of c, and `meanwhile` beside it; both results and what Asterisk played."""
    played = await Played.watch(cfg)
    try:
        run = asyncio.create_task(ivr(c, "run", timeout=RUN_TIMEOUT_S))
        other = await meanwhile(played)
        result = await run
        await asyncio.sleep(1.0)
    finally:
        played.close()
    return result, other, played


SILENT = [f"+33199006{i}30" for i in (3, 5, 6)]  # blocks 63, 65, 66
FOURTH = "+33199006710"  # imported last: dialed once a silent call has ended


@dataclass
class Rebuilt:
    """A run during which the intro was rebuilt, then the next run."""
    old: dict[str, str]  # manifests before and after the rebuild
    new: dict[str, str]
    run1: tuple[int, str, str]
    built_at: float  # monotonic, and the wall clock, when the rebuild had finished
    built_wall: datetime
    open_then: int  # attempts without an outcome at that moment
    played1: Played
    later: list[str]  # the next run's list
    run2: tuple[int, str, str]
    played2: Played


async def rebuild_once_all_heard_the_intro(c: Campaign, played: Played
                                           ) -> tuple[float, datetime, int]:
    await when(lambda: sum(bool(played.of(ch, "intro")) for ch in played.by_channel) >= 3,
               60, "the three intros")
    items = c.data["prompts"]["items"]
    items["intro"]["text"] = items["intro"]["text"].replace("Oui, 1.", "Oui, tapez 1.")
    c.write()
    rc, _, err = await ivr(c, "prompts", "build")
    assert rc == 0 and "not installed" not in err, err
    still_open = rows(c.store, "SELECT COUNT(*) AS n FROM calls WHERE outcome IS NULL")
    return time.monotonic(), datetime.now(timezone.utc), still_open[0]["n"]


async def rebuild_during_a_run(cfg: Config, c: Campaign) -> Rebuilt:
    path = c.cfg_file.with_name("silent.csv")
    path.write_text("number\n" + "".join(f"{n}\n" for n in [*SILENT, FOURTH]))
    rc, _, err = await ivr(c, "contacts", "import", str(path), "--source", "silent",
                           "--basis", "consent")
    assert rc == 0, err
    rc, _, err = await ivr(c, "prompts", "build")
    assert rc == 0, err
    old = c.manifest()
    run1, (built_at, built_wall, open_then), played1 = await run_with(
        cfg, c, lambda played: rebuild_once_all_heard_the_intro(c, played))
    new = c.manifest()
    # The next run: callees who press a key during the intro (a silent one took 40 s, and how
    # long a call lasts is not what this run checks, only the version it plays).
    later = await import_list(c, "64", ["10", "20"])
    run2, _, played2 = await run_with(cfg, c, lambda played: asyncio.sleep(0))
    return Rebuilt(old, new, run1, built_at, built_wall, open_then, played1, later, run2,
                   played2)


def test_a_rebuild_during_a_run_leaves_the_calls_in_flight_unchanged(
        pbx: Any, tmp_path: Path) -> None:
    """Three silent callees hear the intro three times (max_repeats 2): the intro is rebuilt,
    one word changed, after their first intro; the calls in flight keep playing the old file,
    still on disk, and record its sha256. A fourth call of the same run (max_concurrent 3)
    starts after the rebuild: it plays the new version and records it. The next run's calls
    play the new version too. Then prune removes the old file."""
    cfg, made = pbx
    c = campaign(tmp_path, "R", "Marie Dupont", 4624, tmp_path / "r.db", max_repeats=2)
    c.data["dialer"]["max_concurrent"] = 3
    c.write()
    made.append(c.name)
    r = asyncio.run(rebuild_during_a_run(cfg, c))
    assert r.run1[0] == 0 and "run finished: 4 call(s) placed" in r.run1[1], r.run1
    assert r.run2[0] == 0 and "run finished: 2 call(s) placed" in r.run2[1], r.run2
    assert r.open_then == 3  # the rebuild finished while the three calls were in flight
    assert r.old["intro"] != r.new["intro"]
    assert {k: v for k, v in r.old.items() if k != "intro"} == \
        {k: v for k, v in r.new.items() if k != "intro"}
    old_file = sounds(cfg) / f"{prompt_sound(c.name, 'intro', r.old['intro'])}.wav"

    calls = rows(c.store, "SELECT * FROM calls ORDER BY id")
    first, late, second = calls[:3], calls[3], calls[4:]
    assert sorted(k["number"] for k in first) == sorted(SILENT)
    for k in first:
        intros = r.played1.of(k["channel_id"], "intro")
        assert len(intros) == 3, (k["number"], intros)  # the intro and its two re-asks
        assert any(t > r.built_at for t, _ in intros), intros  # played after the rebuild
        assert {file_sha(cfg, s) for _, s in intros} == {r.old["intro"]}
        assert k["outcome"] == "no_input"
        assert json.loads(k["prompts_sha256"])["intro"] == r.old["intro"]
        check_heard_is_played(cfg, r.played1, c.store, k)
    assert hashlib.sha256(old_file.read_bytes()).hexdigest() == r.old["intro"]  # still there
    # Placed after the rebuild by the same run: it plays the new version, and records it.
    assert late["number"] == FOURTH and parse_utc(late["started_at"]) > r.built_wall
    assert late["outcome"] == "message_played"
    late_intros = r.played1.of(late["channel_id"], "intro")
    assert late_intros and {file_sha(cfg, s) for _, s in late_intros} == {r.new["intro"]}
    assert heard(c.store, late)["intro"] == r.new["intro"]
    check_heard_is_played(cfg, r.played1, c.store, late)
    assert sorted(k["number"] for k in second) == sorted(r.later)
    for k in second:  # the next run's calls take the new version, and say so
        intros = r.played2.of(k["channel_id"], "intro")
        assert intros and {file_sha(cfg, s) for _, s in intros} == {r.new["intro"]}
        assert heard(c.store, k)["intro"] == r.new["intro"]
        check_heard_is_played(cfg, r.played2, c.store, k)
    check_prune(cfg, c, tmp_path, r)


def check_prune(cfg: Config, c: Campaign, base: Path, r: Rebuilt) -> None:
    """The old version is no longer needed: prune lists it, removes it with --yes; the new
    one stays, and the archive keeps both for the proof of consent."""
    old_file = sounds(cfg) / f"{prompt_sound(c.name, 'intro', r.old['intro'])}.wav"
    new_file = sounds(cfg) / f"{prompt_sound(c.name, 'intro', r.new['intro'])}.wav"

    async def prune() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        return await ivr(c, "prompts", "prune"), await ivr(c, "prompts", "prune", "--yes")
    dry, done = asyncio.run(prune())
    rel = str(old_file.relative_to(sounds(cfg)))
    assert dry[0] == 0 and f"would remove {rel}" in dry[1].splitlines(), dry
    assert done[0] == 0 and f"removed {rel}" in done[1].splitlines(), done
    assert not old_file.exists() and new_file.is_file()
    archive = archive_dir(config.from_dict(c.data, base))
    for sha in (r.old["intro"], r.new["intro"]):
        assert hashlib.sha256((archive / f"{sha}.wav").read_bytes()).hexdigest() == sha
