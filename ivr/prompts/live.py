"""The prompt versions a running controller plays: the last build that is installed.

A rebuild during a run adds files (content-addressed, contract.prompt_sound) and rewrites the
build's manifest. Each call takes the version in force when its IVR session starts and keeps
it to its end (callflow/agi_ivr.py), so calls in flight are unchanged while new calls take the
new version; the attempt records the version it played.

The manifest is looked at (one stat) at most once a second. A new version is taken only once
every one of its files is installed where the controller can see it (every sandbox instance's
own sounds folder, sandbox_nodes.sounds_dirs, or pbx.sounds_dir): no call, on any node, asks
Asterisk for a file that is not there yet. A manifest rewritten by another campaign's build
(two configs sharing prompts.build_dir) is never taken, nor one built for other flow keys
(yes_key, no_key, optout_key, slots) than the run reads: its intro would tell callees keys the
run reads otherwise (restarting `ivr run` takes the new keys). With a PBX whose sounds
folder the controller cannot see, the administrator installs first, then rebuilds (README).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.prompts.manifest import ForeignBuild, OtherFlowKeys, keys_said
from ivr.telephony.contract import prompt_sound

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


@dataclass(frozen=True)
class PromptVersion:
    hashes: Mapping[str, str]  # prompt key -> sha256 (what the attempt records)
    sounds: Mapping[str, str]  # prompt key -> the file played (that exact version)
    # prompt key -> its length in 8 kHz samples, as Asterisk counts (AGI endpos), when known
    samples: Mapping[str, int] = field(default_factory=dict)


Lengths = Callable[[str], "int | None"]  # a sound's sha256 -> its length in samples


def version_of(campaign: str, hashes: Mapping[str, str],
               lengths: Lengths | None = None) -> PromptVersion:
    samples = {k: n for k, h in hashes.items() if h and lengths is not None
               and (n := lengths(h)) is not None}
    return PromptVersion(dict(hashes), {k: prompt_sound(campaign, k, h)
                                        for k, h in hashes.items() if h}, samples)


class LivePrompts:
    """`current()` is what a call starting now plays."""

    def __init__(self, campaign: str, hashes: Mapping[str, str], *,
                 manifest: Path | None = None, load: Callable[[], Mapping[str, str]] | None = None,
                 installed_dir: Path | None = None,
                 installed_dirs: Callable[[], Sequence[Path]] | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 lengths: Lengths | None = None) -> None:
        """installed_dir: the one folder to check; installed_dirs: the folders, listed at each
        check (sandbox instances started during the run count too); lengths: a sound's
        length by its sha256 (prompts/archive.py)."""
        self.campaign = campaign
        self._lengths = lengths
        self.version = version_of(campaign, hashes, lengths)
        self._manifest, self._load, self._installed = manifest, load, installed_dir
        self._installed_dirs = installed_dirs
        self._monotonic = monotonic
        self._next_check = monotonic() + CHECK_EVERY_S
        self._seen = self._stamp()
        self._said: tuple[int, int] | None = None  # the manifest a waiting line was said for

    def current(self) -> PromptVersion:
        if self._manifest is not None and self._load is not None:
            now = self._monotonic()
            if now >= self._next_check:
                self._next_check = now + CHECK_EVERY_S
                self._refresh()
        return self.version

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._manifest) if self._manifest is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return
        try:
            candidate = version_of(self.campaign, self._load(),  # type: ignore[misc]
                                   self._lengths)
        except ForeignBuild as exc:  # another campaign's build: never played, said once
            self._seen = stamp
            log.error("prompt manifest rewritten for another campaign, not followed: %s", exc)
            return
        except OtherFlowKeys as exc:  # its intro names other keys than this run reads
            self._seen = stamp
            log.warning("prompts rebuilt for other flow keys (%s): not played, calls keep the "
                        "current version; restart `ivr run` to take the new keys",
                        keys_said(exc.changed, "this run"))
            return
        except Exception as exc:  # a build being written, or broken: keep playing ours
            self._say_once(stamp, log.warning, "prompt manifest changed but cannot be read "
                           "(%s): keeping the current version", exc)
            return
        lost = sorted(set(self.version.hashes) - set(candidate.hashes))
        if lost:  # this run's flow may still play them: the PBX-wide ivr/<key> is not ours
            self._seen = stamp
            log.warning("prompts rebuilt without %s, which this run may still play: not "
                        "followed, calls keep the current version; restart `ivr run` to take "
                        "the new build", ", ".join(lost))
            return
        missing = self._missing(candidate)
        if missing:  # not installed yet: look again next time (the stamp is not taken)
            self._say_once(stamp, log.info, "new prompt version built, waiting for its "
                           "install (%s)", missing[0])
            return
        self._seen = stamp
        if candidate.hashes != self.version.hashes:
            log.info("prompts rebuilt: new calls play the new version (%s)",
                     ", ".join(f"{k} {h[:12]}" for k, h in sorted(candidate.hashes.items())
                               if self.version.hashes.get(k) != h))
            self.version = candidate

    def _say_once(self, stamp: tuple[int, int], say: Callable[..., None], *args: Any) -> None:
        """Once per manifest written: these are looked at again every second of calling
        until the build is installed or readable, and said 3,600 times an hour."""
        if self._said != stamp:
            self._said = stamp
            say(*args)

    def _missing(self, candidate: PromptVersion) -> list[str]:
        """The candidate's files not yet in every folder the PBX plays from."""
        dirs = [self._installed] if self._installed is not None else []
        if self._installed_dirs is not None:
            try:
                dirs += self._installed_dirs()
            except OSError as exc:  # keep playing ours; look again next time
                return [f"the sounds folders ({exc})"]
        return [str(path) for d in dirs for s in candidate.sounds.values()
                if not (path := d / f"{s}.wav").is_file()]
