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
import shutil
import tempfile
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


def archive_build(cfg: Config, manifest: dict[str, Any]) -> Path:
    """Copy each built prompt and the manifest into the archive; returns the archive folder."""
    root = archive_dir(cfg)
    try:
        (root / MANIFESTS).mkdir(parents=True, exist_ok=True)
        for key, entry in sorted(manifest["prompts"].items()):
            data = cfg.path(entry["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise PromptError(f"prompt {key!r}: built file does not match its manifest: "
                                  "run `ivr prompts build` again")
            _write_once(root / f"{entry['sha256']}.wav", data)
        blob = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        _write_once(root / MANIFESTS / f"{hashlib.sha256(blob).hexdigest()}.json", blob)
    except OSError as exc:
        raise PromptError(f"cannot archive the prompts in {root} ({exc.strerror or exc}): fix "
                          "its permissions or set prompts.archive_dir") from None
    return root


def heard_prompts(cfg: Config, heard: dict[str, str] | Any) -> list[dict[str, Any]]:
    """Each heard prompt: its name, sha256 and whether its audio is in the archive."""
    if not isinstance(heard, dict):
        return []
    return [{"prompt": key, "sha256": sha, "archived": audio_path(cfg, str(sha)).is_file()}
            for key, sha in sorted(heard.items())]


def export_heard(cfg: Config, proof: list[dict[str, Any]], dest: Path) -> list[Path]:
    """Copy the archived audio of every prompt heard in `proof` into dest, as
    <call id>-<prompt>-<sha256>.wav; a prompt missing from the archive is skipped (shown as
    archived: false by `ivr consent show`)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for row in proof:
        for item in heard_prompts(cfg, row.get("heard_sha256")):
            if item["archived"]:
                target = dest / f"{row.get('call_id')}-{item['prompt']}-{item['sha256']}.wav"
                shutil.copyfile(audio_path(cfg, item["sha256"]), target)
                out.append(target)
    return out
