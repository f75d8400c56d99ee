"""Every prompt version ever built, by sha256: the exact audio a person consented to stays
producible years later (issue 16 item 6), whatever later builds did to prompts/build/.

Layout (prompts.archive_dir, default `archive/` beside the build dir, e.g. prompts/archive/):
  <sha256>.wav                  the built audio, named by its own hash; written once, never
                                overwritten nor deleted by a build
  manifests/<sha256>.json       each build's manifest, named by the hash of its bytes

A consent row keeps the sha256 of each prompt heard (consents.heard_sha256), so
`ivr consent show` finds the audio here; `--export DIR` copies it out.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.errors import PromptError

MANIFESTS = "manifests"


def archive_dir(cfg: Config) -> Path:
    if cfg.prompts.archive_dir:
        return cfg.path(cfg.prompts.archive_dir)
    return cfg.path(cfg.prompts.build_dir).parent / "archive"


def audio_path(cfg: Config, sha256: str) -> Path:
    return archive_dir(cfg) / f"{sha256}.wav"


WAV_HEADER = 44  # what Asterisk's format_wav takes off a file's size to count its samples


def lengths(cfg: Config) -> Callable[[str], int | None]:
    """A sound's length by its sha256, in 8 kHz samples counted as Asterisk does (format_wav:
    (size - 44) / 2), which is the AGI endpos of a sound played to its end; None when the
    archive lacks it. Read once per sound: archived audio never changes."""
    root, known = archive_dir(cfg), {}

    def samples(sha256: str) -> int | None:
        if sha256 not in known:
            try:
                known[sha256] = max(0, ((root / f"{sha256}.wav").stat().st_size - WAV_HEADER) // 2)
            except OSError:
                return None
        return known[sha256]
    return samples


def _write_once(path: Path, data: bytes) -> None:
    """Create `path` atomically unless it exists (same name = same content: a hash)."""
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if another build archived it meanwhile: never overwritten
    except FileExistsError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)


def archive_audio(cfg: Config, data: bytes) -> Path:
    """Put audio in the archive under its sha256 (never overwritten); returns its path."""
    path = audio_path(cfg, hashlib.sha256(data).hexdigest())
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_once(path, data)
    return path


def _folder(root: Path, where: str, fix: str) -> None:
    """mkdir -p root, or one line naming `where` (the key or option) and the path."""
    if root.exists() and not root.is_dir():
        raise PromptError(f"{where}: {root} is not a directory: {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptError(f"{where}: cannot create {root} ({exc.strerror or exc}): "
                          f"{fix}") from None


def archive_build(cfg: Config, manifest: dict[str, Any],
                  files: Mapping[str, Path] | None = None) -> Path:
    """Copy each built prompt and the manifest into the archive; returns the archive folder.
    `files`: where each prompt's audio is read (the build's staging folder: it is archived
    before it is put in place, so a prompt never plays unarchived); else its manifest path."""
    root = archive_dir(cfg)
    fix = "point it to a folder you can write to; nothing was built"
    _folder(root, "prompts.archive_dir", fix)
    _folder(root / MANIFESTS, "prompts.archive_dir", fix)
    try:
        for key, entry in sorted(manifest["prompts"].items()):
            data = ((files or {}).get(key) or cfg.path(entry["path"])).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise PromptError(f"prompt {key!r}: built file does not match its manifest: "
                                  "run `ivr prompts build` again")
            _write_once(root / f"{entry['sha256']}.wav", data)
        blob = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        _write_once(root / MANIFESTS / f"{hashlib.sha256(blob).hexdigest()}.json", blob)
    except OSError as exc:
        raise PromptError(f"cannot archive the prompts in {root} ({exc.strerror or exc}): fix "
                          "its permissions or free space, or set prompts.archive_dir; nothing "
                          "was built") from None
    return root


def archived_manifests(cfg: Config, needle: str) -> Iterator[Mapping[str, Any]]:
    """Every archived manifest whose text holds `needle` (a source digest) and records its
    `sources`. Cheap: each manifest's bytes are read, only those naming the digest are parsed.
    A damaged or unreadable one is skipped: it proves nothing."""
    for path in sorted((archive_dir(cfg) / MANIFESTS).glob("*.json")):
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if needle in text else None
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("sources"), Mapping):
            yield data


def archived_sources(cfg: Config, needle: str) -> Iterator[Mapping[str, Any]]:
    """The `sources` of every archived manifest naming `needle` (archived_manifests)."""
    for data in archived_manifests(cfg, needle):
        yield data["sources"]


def missing_from_archive(cfg: Config, manifest: Mapping[str, Any]) -> list[str]:
    """The prompts of a build whose audio is not in the archive (their proof would be lost)."""
    prompts = manifest.get("prompts")
    if not isinstance(prompts, Mapping):
        return []
    return sorted(key for key, entry in prompts.items()
                  if not isinstance(entry, Mapping)
                  or not audio_path(cfg, str(entry.get("sha256"))).is_file())


def heard_prompts(cfg: Config, heard: dict[str, str] | Any) -> list[dict[str, Any]]:
    """Each heard prompt: its name, sha256 and whether its audio is in the archive."""
    if not isinstance(heard, dict):
        return []
    return [{"prompt": key, "sha256": sha, "archived": audio_path(cfg, str(sha)).is_file()}
            for key, sha in sorted(heard.items())]


EXPORT_FIX = "give --export a folder you can write to (it is created if missing)"


def export_folder(dest: Path) -> None:
    """--export's folder made or checked, before anything is printed: a file there used to be
    refused after the proof was already on stdout (exit 1 with the output half done)."""
    _folder(dest, "--export", EXPORT_FIX)


def export_heard(cfg: Config, proof: list[dict[str, Any]], dest: Path) -> list[Path]:
    """Copy the archived audio of every prompt heard in `proof` into dest, as
    <call id>-<prompt>-<sha256>.wav; a prompt missing from the archive is skipped (shown as
    archived: false by `ivr consent show`)."""
    from ivr.prompts.install import atomic_write  # here: install -> manifest -> this module
    export_folder(dest)
    out = []
    for row in proof:
        for item in heard_prompts(cfg, row.get("heard_sha256")):
            if item["archived"]:
                target = dest / f"{row.get('call_id')}-{item['prompt']}-{item['sha256']}.wav"
                try:
                    atomic_write(target, audio_path(cfg, item["sha256"]).read_bytes())
                except OSError as exc:
                    raise PromptError(f"--export: cannot write {target} "
                                      f"({exc.strerror or exc}): {EXPORT_FIX}") from None
                out.append(target)
    return out
