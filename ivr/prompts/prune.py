"""Old installed prompt versions: which ones `ivr prompts prune` removes.

Every install adds the content-addressed versions sounds/ivr/<campaign dir>/<key>-<sha12>.wav
(contract.prompt_sound) and never removes one, so a call in flight keeps playing its version.
Prune removes, in one campaign's folder, the versions of a prompt that are:
  - not the current one (the sha256 of the last build's manifest),
  - older than it (installed before the current version's file),
  - named by no open attempt (no outcome yet).
An attempt records the versions it played (calls.prompts_sha256) only when it ends, and a run
plays the versions current when it started: an open attempt with no record may be playing any
older version, so while there is one, every older version stays. Prune holds the campaign's
run lock while it works: no run of the campaign can be playing a version it removes, and a
run started afterwards plays the current ones. On PostgreSQL the lock refuses nobody (the
campaign's controllers share it), so a live controller of the campaign refuses the prune: a
run that kept an older build (one made for other flow keys) would play a version removed.

In the sandbox every instance has its own sounds folder (telephony/sandbox_nodes.py): the plan
is made on instance 1's, where prompts are installed first, and each version it removes is
removed from every instance's folder.

The archive (prompts.archive_dir, ivr/prompts/archive.py) is never pruned: the proof of
consent finds every version there. A version about to be removed whose audio is not in it (a
build made before builds archived first, an archive emptied since) is copied there first, so
prune never removes the last copy of what a person heard. The plain sounds/ivr/<key>.wav copies
stay too.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.errors import PbxError, PromptError, StoreError
from ivr.prompts.archive import archive_audio, archive_dir
from ivr.prompts.build import load_manifest
from ivr.store.base import Row, RunOwner, StoreBackend
from ivr.telephony.contract import SOUNDS_DIR, campaign_sound_dir

VERSION_RE = re.compile(r"(?P<key>[A-Za-z0-9_-]+)-(?P<sha12>[0-9a-f]{12})\.wav")

# Why a version stays (PrunePlan.kept values)
CURRENT = "current"
NEWER = "newer than the current version"
NOT_BUILT = "not a prompt of the last build"
NO_CURRENT = "the current version is not installed"
NAMED = "named by an open attempt"
MAY_PLAY = "an open attempt may be playing it"


@dataclass(frozen=True)
class Version:
    """One installed file: a prompt's version in the campaign's folder."""
    key: str
    sha12: str
    path: Path
    mtime_ns: int


@dataclass
class PrunePlan:
    campaign: str
    folder: Path
    remove: list[Version] = field(default_factory=list)
    kept: dict[Version, str] = field(default_factory=dict)  # version -> why it stays
    open_attempts: int = 0
    removed: list[Path] = field(default_factory=list)  # filled by apply()
    mirrors: list[Path] = field(default_factory=list)  # the same folder of the other instances


def sounds_dir(cfg: Config) -> Path:
    """The PBX sounds folder the prompts are installed into (as install_prompts_to_pbx)."""
    if cfg.pbx.mode == "sandbox":
        from ivr.telephony.sandbox import Sandbox
        return Sandbox(cfg).sounds
    if not cfg.pbx.sounds_dir:
        raise PbxError("pbx.sounds_dir is not set: give the Asterisk sounds folder the "
                       "prompts were installed into")
    return Path(cfg.pbx.sounds_dir)


def other_sounds_dirs(cfg: Config) -> list[Path]:
    """The sandbox's other instances' own sounds folders (none with an external PBX)."""
    if cfg.pbx.mode != "sandbox":
        return []
    from ivr.telephony.sandbox_nodes import sounds_dirs
    return sounds_dirs(cfg)[1:]


def installed_versions(folder: Path) -> list[Version]:
    """The <key>-<sha12>.wav files of a campaign folder; anything else is not ours."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        m = VERSION_RE.fullmatch(path.name)
        if m and path.is_file():
            out.append(Version(m["key"], m["sha12"], path, path.stat().st_mtime_ns))
    return out


def _named(open_calls: Iterable[Row]) -> tuple[set[str], int]:
    """The sha12 the open attempts recorded, and how many recorded nothing yet."""
    named: set[str] = set()
    unknown = 0
    for call in open_calls:
        try:
            heard = json.loads(call.get("prompts_sha256") or "{}")
        except ValueError:
            heard = {}
        if not isinstance(heard, dict) or not heard:
            unknown += 1
            continue
        named.update(str(sha)[:12] for sha in heard.values())
    return named, unknown


def _why_kept(v: Version, current: dict[str, Version | None], named: set[str],
              unknown: int) -> str | None:
    """Why this version must stay, or None when prune may remove it."""
    if v.key not in current:
        return NOT_BUILT
    now = current[v.key]
    if now is None:
        return NO_CURRENT
    if v == now:
        return CURRENT
    if v.mtime_ns >= now.mtime_ns:
        return NEWER
    if v.sha12 in named:
        return NAMED
    if unknown:
        return MAY_PLAY
    return None


def plan(campaign: str, manifest: dict[str, Any], sounds: Path,
         open_calls: list[Row], mirrors: Sequence[Path] = ()) -> PrunePlan:
    """What prune removes from sounds/ivr/<campaign dir>/, and why every other version stays.
    mirrors: other sounds folders holding the same versions (apply removes there too)."""
    sub = Path(SOUNDS_DIR) / campaign_sound_dir(campaign)
    folder = sounds / sub
    versions = installed_versions(folder)
    by_name = {(v.key, v.sha12): v for v in versions}
    current: dict[str, Version | None] = {
        key: by_name.get((key, str(entry["sha256"])[:12]))
        for key, entry in manifest.get("prompts", {}).items()}
    named, unknown = _named(open_calls)
    out = PrunePlan(campaign, folder, open_attempts=len(open_calls),
                    mirrors=[m / sub for m in mirrors])
    for v in versions:
        why = _why_kept(v, current, named, unknown)
        if why is None:
            out.remove.append(v)
        else:
            out.kept[v] = why
    return out


def apply(p: PrunePlan) -> PrunePlan:
    for v in p.remove:
        v.path.unlink(missing_ok=True)
        p.removed.append(v.path)
        for folder in p.mirrors:
            copy = folder / v.path.name
            if copy.is_file():
                copy.unlink(missing_ok=True)
                p.removed.append(copy)
    return p


def archive_removed(cfg: Config, p: PrunePlan) -> None:
    """Into the archive, each version prune removes whose audio is not there yet (by the
    sha256 of its bytes); a failure removes nothing."""
    for v in p.remove:
        try:
            archive_audio(cfg, v.path.read_bytes())  # already there: nothing is written
        except OSError as exc:
            raise PromptError(f"cannot archive {v.path} in {archive_dir(cfg)} before removing "
                              f"it ({exc.strerror or exc}): fix prompts.archive_dir; nothing "
                              "was removed") from None


def prune(cfg: Config, store: StoreBackend, now: Callable[[], datetime], *,
          yes: bool) -> PrunePlan:
    """Plan (and with yes, remove) the campaign's old installed versions, holding its run
    lock: a run of the campaign in progress makes this a one-line StoreError."""
    campaign = cfg.campaign.name
    manifest = load_manifest(cfg)
    sounds, others = sounds_dir(cfg), other_sounds_dirs(cfg)
    with store.hold_run(RunOwner.this_process(now()), campaign):
        _refuse_beside_a_run(store, campaign)
        p = plan(campaign, manifest, sounds, store.open_calls(campaign=campaign), others)
        if yes:
            archive_removed(cfg, p)  # never the last copy of what a person heard
            apply(p)
        return p


def _refuse_beside_a_run(store: StoreBackend, campaign: str) -> None:
    """StoreError naming the campaign's live controllers other than this prune's own
    registration (PostgreSQL's hold_run shares the campaign; SQLite's lock already refused)."""
    live = {r["controller"] for r in store.peer_load(campaign) if r["campaign"] == campaign}
    others = [r for r in store.controllers(campaign)
              if r["id"] in live and r["id"] != store.controller_id]
    if others:
        who = ", ".join(f"controller {r['id']} (pid {r['pid']} on host {r['host']} since "
                        f"{r['started_at']})" for r in others)
        raise StoreError(f"campaign {campaign!r} is being run by {who}: wait for its run to "
                         "end or stop it, then prune")
