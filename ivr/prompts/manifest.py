"""The build's manifest (prompts.build_dir/manifest.json): reading it, and what it was made
for: its campaign and a fingerprint of every source it was made from.

Two configs in one folder share prompts.build_dir unless one is changed (a cloned config keeps
it), and a text or a legal mention edited after the build leaves the built audio saying the old
one. The manifest records `campaign` and `sources` (a hash per prompt text or recording, per
legal.* field) so that `ivr check` and `ivr run` refuse a build made for another campaign or
from other sources, and install and the live follower refuse another campaign's build.

It records `flow_keys` too (flow.yes_key, no_key, optout_key, slots): the intro tells the
callee which key means what, and a run reads the keys of the config it started with. A build
made for other keys is stale for `ivr check` and `ivr run`, and a running campaign does not
play it (OtherFlowKeys): a callee told "2 for yes" by the new intro would be read by the old
keys. A manifest written before keys were recorded is judged by its sources alone, as then.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ivr.config import Config, PromptSource
from ivr.errors import PromptError
from ivr.prompts.archive import (archive_dir, archived_manifests, archived_sources,
                                 missing_from_archive)

Manifest = dict[str, Any]
KeyChange = tuple[str, Any, Any]  # (flow.<key>, as built, as configured)

MANIFEST_NAME = "manifest.json"
LEGAL_FIELDS = ("sender", "postal_address", "email")
REBUILD = "run `ivr prompts build`"


class ForeignBuild(PromptError):
    """The build in prompts.build_dir was made for another campaign."""


class OtherFlowKeys(PromptError):
    """The build in prompts.build_dir was made for other flow keys than the config's;
    `changed` names them ("flow.yes_key '2' in the build, '1' in ...")."""

    def __init__(self, message: str, changed: list[KeyChange]) -> None:
        super().__init__(message)
        self.changed = changed


def keys_said(changed: list[KeyChange], config_is: str) -> str:
    """The differing keys, the config's side called `config_is` ("the config", "this run")."""
    def said(value: Any) -> str:
        return "none" if value is None else repr(value)
    return "; ".join(f"{name} {said(built)} in the build, {said(now)} in {config_is}"
                     for name, built, now in changed)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at path as written (None when absent); PromptError when damaged."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PromptError(f"{path} is unreadable ({exc}): run `ivr prompts build` again") from exc
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
        raise PromptError(f"{path} is not a prompt manifest: run `ivr prompts build` again")
    return data


def not_built(path: Path) -> str:
    """The one line `ivr run` refuses with and `ivr check` reports: they agree."""
    return f"prompts are not built ({path} missing): run `ivr prompts build` first"


def load_manifest(cfg: Config) -> Manifest:
    """The manifest of the last successful build; another campaign's is refused (ForeignBuild):
    a run, its live follower and the install never take it."""
    path = cfg.path(cfg.prompts.build_dir) / MANIFEST_NAME
    manifest = read_manifest(path)
    if manifest is None:
        raise PromptError(not_built(path))
    check_not_foreign(cfg, manifest)
    return manifest


def load_playable(cfg: Config) -> Manifest:
    """The manifest a run of this config plays: load_manifest's, made for the config's flow
    keys (else OtherFlowKeys; one recording none, built by an older version, is taken)."""
    manifest = load_manifest(cfg)
    problem = flow_keys_problem(cfg, manifest)
    if problem:
        raise OtherFlowKeys(problem, flow_keys_changed(cfg, manifest))
    return manifest


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def spoken_source(text: str) -> str:
    """A TTS text as the build renders it: YAML re-wrapping is not a change."""
    return " ".join(text.split())


def prompt_digest(kind: str, value: str) -> str:
    """kind "text": the normalised text; kind "file": the recording's sha256."""
    return _digest([kind, value])


def fingerprint(cfg: Config, prompts: Mapping[str, str]) -> dict[str, str]:
    """Source name -> digest: the prompts' (prompt_digest) and the legal fields'."""
    out = {f"prompts.items.{key}": digest for key, digest in prompts.items()}
    for name in LEGAL_FIELDS:
        out[f"legal.{name}"] = _digest(spoken_source(getattr(cfg.legal, name)))
    return out


def _unchanged(cfg: Config, key: str, recorded: Mapping[str, Any],
               now: Mapping[str, str]) -> bool:
    """A source as it was built. The legal fields are compared as said (a YAML `|` block's
    trailing newline is not a change); a build made before that recorded the raw value's
    digest, which the same value still matches (an upgrade makes no build stale)."""
    if recorded.get(key) == now.get(key):
        return True
    field = key.removeprefix("legal.")
    return field in LEGAL_FIELDS and key != field \
        and recorded.get(key) == _digest(getattr(cfg.legal, field))


def _config_digest(cfg: Config, item: PromptSource) -> str:
    if item.file is None:
        return prompt_digest("text", spoken_source(item.text or ""))
    try:
        data = (cfg.path(cfg.prompts.sources_dir) / item.file).read_bytes()
    except OSError:
        return "unreadable"  # never equal to a build's: the build names the file's problem
    return prompt_digest("file", hashlib.sha256(data).hexdigest())


def config_fingerprint(cfg: Config) -> dict[str, str]:
    """The fingerprint a build of this config, as it is now, would record."""
    return fingerprint(cfg, {key: _config_digest(cfg, item)
                             for key, item in cfg.prompts.items.items()})


def flow_keys(cfg: Config) -> dict[str, Any]:
    """What each key means as this config's prompts say it (recorded by every build)."""
    f = cfg.flow
    return {"yes_key": str(f.yes_key), "no_key": str(f.no_key),
            "optout_key": str(f.optout_key),
            "slots": {str(k): str(v) for k, v in sorted(f.slots.items())}}


def _flat_keys(keys: Mapping[str, Any], ask_slot: bool) -> dict[str, Any]:
    out = {f"flow.{name}": keys.get(name) for name in ("yes_key", "no_key", "optout_key")}
    slots = keys.get("slots")
    if ask_slot and isinstance(slots, dict):  # without the slot question no slot key is read
        out |= {f"flow.slots.{k}": v for k, v in sorted(slots.items())}
    return out


def flow_keys_changed(cfg: Config, manifest: Mapping[str, Any]) -> list[KeyChange]:
    """(name, as built, as configured) for each flow key the build was made otherwise; none
    for a build that records no keys (an older version's: judged by its sources, as then)."""
    recorded = manifest.get("flow_keys")
    if not isinstance(recorded, dict):
        return []
    ask_slot = cfg.flow.ask_slot
    built, now = _flat_keys(recorded, ask_slot), _flat_keys(flow_keys(cfg), ask_slot)
    names = list(now) + [k for k in built if k not in now]
    return [(k, built.get(k), now.get(k)) for k in names if built.get(k) != now.get(k)]


def flow_keys_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """One line when the build was made for other flow keys than the config's."""
    changed = flow_keys_changed(cfg, manifest)
    if not changed:
        return None
    keys = keys_said(changed, "the config")
    return (f"campaign {cfg.campaign.name!r}: {_where(cfg)} was built for other flow keys "
            f"({keys}): its prompts may name other keys than a run reads: {REBUILD}")


def _where(cfg: Config) -> str:
    return f"{cfg.prompts.build_dir}/{MANIFEST_NAME}"


def foreign_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """One line when the manifest names another campaign than the config's."""
    built_for = manifest.get("campaign")
    if built_for is None or built_for == cfg.campaign.name:
        return None
    return (f"campaign {cfg.campaign.name!r}: {_where(cfg)} is the build of campaign "
            f"{built_for!r}: give this config its own prompts.build_dir and {REBUILD}")


def check_not_foreign(cfg: Config, manifest: Mapping[str, Any]) -> None:
    problem = foreign_problem(cfg, manifest)
    if problem:
        raise ForeignBuild(problem)


def stale_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """One line when the build was not made for this config as it is now, else None."""
    foreign = foreign_problem(cfg, manifest)
    if foreign:
        return foreign
    name = cfg.campaign.name
    recorded = manifest.get("sources")
    if "campaign" not in manifest or not isinstance(recorded, dict):
        return (f"campaign {name!r}: {_where(cfg)} records no campaign nor sources (built by "
                f"an older version): {REBUILD}")
    keys = flow_keys_problem(cfg, manifest)
    if keys:
        return keys
    now = config_fingerprint(cfg)
    unreadable = sorted(k for k, v in now.items() if v == "unreadable")
    if unreadable:
        key = unreadable[0]
        item = cfg.prompts.items[key.removeprefix("prompts.items.")]
        return (f"campaign {name!r}: {key}: its recording {item.file} is missing or unreadable "
                f"in {cfg.prompts.sources_dir}: put it back, or name another file and {REBUILD}")
    changed = sorted(k for k in set(now) | set(recorded)
                     if not _unchanged(cfg, k, recorded, now))
    if not changed:
        return None
    shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    return (f"campaign {name!r}: the prompts in {cfg.prompts.build_dir} do not match the "
            f"config ({shown} changed since they were built): {REBUILD}")


LEGAL_KEY = "prompts.items.legal"


def _legal_moved(cfg: Config, recorded: Any, now: Mapping[str, str]) -> set[str]:
    """The legal.* fields a build of this same legal recording recorded otherwise than `now`."""
    if not isinstance(recorded, Mapping) or recorded.get(LEGAL_KEY) is None \
            or recorded.get(LEGAL_KEY) != now.get(LEGAL_KEY):
        return set()  # another recording (or none): it says nothing of this one
    return {name for name in (f"legal.{f}" for f in LEGAL_FIELDS)
            if name in recorded and not _unchanged(cfg, name, recorded, now)}


def legal_recording_moved(cfg: Config, old: Mapping[str, Any] | None,
                          now: Mapping[str, str]) -> list[str]:
    """The legal.* fields the recorded `legal` prompt (digest in `now`) was built with otherwise
    than `now` says, by the build `old` or any archived build. The archive is read too: the
    last build alone is gone on a fresh deploy (prompts/build not committed), after
    `rm -rf prompts/build` or with a damaged manifest, and the old take then built unrefused."""
    item = cfg.prompts.items.get("legal")
    digest = now.get(LEGAL_KEY)
    if item is None or item.file is None or not digest or digest == "unreadable":
        return []
    found: set[str] = set()
    if old is not None and not foreign_problem(cfg, old):
        found |= _legal_moved(cfg, old.get("sources"), now)
    for recorded in archived_sources(cfg, digest):  # digests only: cheap
        found |= _legal_moved(cfg, recorded, now)
    return [name for name in (f"legal.{f}" for f in LEGAL_FIELDS) if name in found]


def check_legal_recording(cfg: Config, old: Mapping[str, Any] | None,
                          now: Mapping[str, str]) -> None:
    """A recorded `legal` prompt says the mentions it was recorded with. When a legal.* field
    changed since a build of this recording (the last one or an archived one) and the recording
    did not, its transcript was edited but the audio still says the old one: the build refuses
    (the stale check would otherwise be cleared while the old mentions keep playing)."""
    changed = legal_recording_moved(cfg, old, now)
    if changed:
        item = cfg.prompts.items["legal"]
        raise PromptError(f"{LEGAL_KEY}'s recording {item.file} was made for the old "
                          f"{' and '.join(changed)}: record it again (or make it a text); "
                          "nothing was built")


# The recorded prompts that say keys, and the flow_keys entries each of them says.
KEYS_SAID: dict[str, tuple[str, ...]] = {"intro": ("yes_key", "no_key", "optout_key"),
                                          "slot_question": ("slots",)}


def recorded_keys_moved(cfg: Config, old: Mapping[str, Any] | None,
                        now: Mapping[str, str]) -> list[tuple[str, str, Any]]:
    """(prompt, flow key, as that recording was built) for each recorded prompt saying keys
    that a build of the same recording (`old`, or any archived build) made for another value
    of a key it says: its transcript was edited to the new keys, its audio still says the old
    ones, and a callee told "1 for no" would be read by a run that takes 1 as yes."""
    current, out = flow_keys(cfg), []
    for prompt, names in KEYS_SAID.items():
        item, digest = cfg.prompts.items.get(prompt), now.get(f"prompts.items.{prompt}")
        if item is None or item.file is None or not digest or digest == "unreadable" \
                or (prompt == "slot_question" and not cfg.flow.ask_slot):
            continue
        builds = [old] if old is not None else []
        for build in builds + list(archived_manifests(cfg, digest)):
            keys, sources = build.get("flow_keys"), build.get("sources")
            if not isinstance(keys, Mapping) or not isinstance(sources, Mapping) \
                    or sources.get(f"prompts.items.{prompt}") != digest:
                continue  # another recording, or a build that recorded no keys
            out += [(prompt, name, keys.get(name)) for name in names
                    if keys.get(name) != current[name]
                    and (prompt, name, keys.get(name)) not in out]
    return out


def _keys_moved_line(cfg: Config, moved: list[tuple[str, str, Any]]) -> str:
    prompt, name, was = moved[0]
    now = flow_keys(cfg)[name]
    return (f"prompts.items.{prompt}'s recording {cfg.prompts.items[prompt].file} was made "
            f"for flow.{name} {was!r} (the config now says {now!r}): its audio still names "
            "the old key; record it again (or make it a text)")


def check_key_recordings(cfg: Config, old: Mapping[str, Any] | None,
                         now: Mapping[str, str]) -> None:
    """The build refuses a recording whose keys moved (recorded_keys_moved)."""
    moved = recorded_keys_moved(cfg, old, now)
    if moved:
        raise PromptError(f"{_keys_moved_line(cfg, moved)}; nothing was built")


def keys_archive_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """For `ivr check`: a recording of the build was built before for other keys."""
    sources = manifest.get("sources")
    moved = recorded_keys_moved(cfg, None, sources) if isinstance(sources, dict) else []
    if not moved:
        return None
    return (f"campaign {cfg.campaign.name!r}: {_keys_moved_line(cfg, moved)}, and {REBUILD}")


def legal_archive_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """For `ivr check`: the build's legal recording was built before with other mentions (a
    build made before the archive was consulted, e.g. on a fresh deploy, took the old take)."""
    sources = manifest.get("sources")
    if not isinstance(sources, dict):
        return None
    # the legal fields as said now (a build may hold an older version's raw-value digests)
    now = fingerprint(cfg, {"legal": str(sources.get(LEGAL_KEY) or "")})
    changed = legal_recording_moved(cfg, None, now)
    if not changed:
        return None
    return (f"campaign {cfg.campaign.name!r}: {LEGAL_KEY}'s recording "
            f"{cfg.prompts.items['legal'].file} was made for the old {' and '.join(changed)} "
            f"(an archived build in {archive_dir(cfg)} made it with other mentions): record it "
            f"again (or make it a text) and {REBUILD}")


def archive_problem(cfg: Config, manifest: Mapping[str, Any]) -> str | None:
    """One line when a prompt of the build is not in the archive: the proof of consent of
    whoever hears it would have no audio (a build never installs one unarchived; this catches
    an archive emptied or moved since)."""
    missing = missing_from_archive(cfg, manifest)
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return (f"campaign {cfg.campaign.name!r}: the audio of {shown} in {_where(cfg)} is not in "
            f"the prompt archive {archive_dir(cfg)} (prompts.archive_dir), so a proof of consent "
            f"could not produce it: {REBUILD} (it archives every prompt)")


def is_built(cfg: Config) -> bool:
    """A manifest is in prompts.build_dir (sound or not)."""
    return (cfg.path(cfg.prompts.build_dir) / MANIFEST_NAME).is_file()


def build_problem(cfg: Config) -> str | None:
    """For `ivr check` and `ivr run`: one line when the build in prompts.build_dir is not this
    campaign's as the config is now, or when there is none (`ivr run` refuses to start then:
    a check that passed would be contradicted by the run), or when its audio is not archived."""
    path = cfg.path(cfg.prompts.build_dir) / MANIFEST_NAME
    try:
        manifest = read_manifest(path)
    except PromptError as exc:
        return str(exc)
    if manifest is None:
        return not_built(path)
    return (stale_problem(cfg, manifest) or legal_archive_problem(cfg, manifest)
            or keys_archive_problem(cfg, manifest) or archive_problem(cfg, manifest))
