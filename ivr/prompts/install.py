"""Install a build into the PBX's sounds folder.

Each campaign's versions are content-addressed in its own folder (contract.prompt_sound): they
never clash. The plain copies sounds/ivr/<key>.wav are one set for the whole PBX: the
opposition line (callflow/agi_callback.py) and its failsafe (dialplans/ivr-callback.conf)
play them. On a shared PBX (pbx.mode external) they belong to the campaign named in
sounds/ivr/LINE_OWNER, written by the first install: another campaign's install leaves them
as they are and says so, so that building campaign B never makes A's opposition line name B's
candidate. Deleting that file hands the line to the next campaign installed. The sandbox (a
private test PBX, whose line answers the config that last ran `ivr pbx up`) keeps the last
install's.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ivr.config import Config
from ivr.errors import PbxError, PromptError
from ivr.prompts.manifest import check_not_foreign, load_manifest
from ivr.telephony.contract import SOUNDS_DIR, prompt_sound

log = logging.getLogger(__name__)

LINE_OWNER = "opposition-line.campaign"  # in sounds/ivr/: whose prompts the plain copies are


def atomic_write(path: Path, data: bytes) -> None:
    """Whole or not at all: Asterisk never opens half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; Asterisk runs as another user and must read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_file(path: Path, digest: str) -> bool:
    return path.is_file() and sha(path.read_bytes()) == digest


def line_owner(dest_dir: Path) -> str | None:
    """The campaign whose prompts sounds/ivr/<key>.wav are, when recorded."""
    try:
        return (Path(dest_dir) / SOUNDS_DIR / LINE_OWNER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _takes_plain_copies(cfg: Config, dest_dir: Path) -> bool:
    owner = line_owner(dest_dir)
    name = cfg.campaign.name
    if cfg.pbx.mode == "sandbox" or owner in (None, "", name):
        return True
    log.warning("campaign %r: sounds/ivr/<key>.wav not replaced: the opposition line and its "
                "failsafe play them for the whole PBX and they belong to campaign %r; to give "
                "the line to %r, delete %s and install again", name, owner, name,
                Path(dest_dir) / SOUNDS_DIR / LINE_OWNER)
    return False


def _read_built(cfg: Config, key: str, entry: Mapping[str, Any]) -> bytes:
    src = cfg.path(entry["path"])
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise PromptError(f"prompt {key!r}: cannot read {src} ({exc.strerror or exc}): "
                          "run `ivr prompts build` again") from exc
    if sha(data) != entry["sha256"]:
        raise PromptError(f"prompt {key!r}: {src} does not match manifest.json: "
                          "run `ivr prompts build` again")
    return data


def _sounds_key(cfg: Config) -> str:
    """The setting that names the sounds folder, for a one-line error."""
    return "pbx.sandbox_dir" if cfg.pbx.mode == "sandbox" else "pbx.sounds_dir"


def _check_sounds_dir(cfg: Config, dest_dir: Path) -> None:
    """A folder (or not there yet), else one line naming the setting and the path."""
    for folder in (Path(dest_dir), Path(dest_dir) / SOUNDS_DIR):
        if folder.exists() and not folder.is_dir():
            raise PromptError(f"{_sounds_key(cfg)}: {folder} is not a directory: point it to "
                              "the Asterisk sounds folder")


def _open_to_asterisk(d: Path) -> None:
    mode = d.stat().st_mode & 0o7777
    if mode & 0o755 != 0o755:
        try:
            d.chmod(mode | 0o755)
        except PermissionError:  # a folder not ours keeps its mode
            pass


def _make_folder(target: Path, folder: Path) -> None:
    """`folder` and the folders it needs, open to Asterisk (another user) as the files are,
    whatever the umask: under 027 or systemd's UMask=0077 they were 0750/0700, every prompt
    unplayable and every answered call silent. From sounds/ivr down, always; above it (the
    sounds folder itself, its parents), only those this install creates."""
    created = [d for d in (folder, *folder.parents) if not d.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for d in created:
        _open_to_asterisk(d)
    for d in (folder, *folder.parents):
        if d != target and target not in d.parents:
            break
        _open_to_asterisk(d)


def _write_all(cfg: Config, target: Path, blobs: list[tuple[Path, bytes]]) -> None:
    made: set[Path] = set()  # each folder once, not once per file in it
    for path, data in blobs:
        try:
            if path.parent not in made:
                _make_folder(target, path.parent)
                made.add(path.parent)
            if not same_file(path, sha(data)):
                atomic_write(path, data)
        except OSError as exc:
            raise PromptError(f"{_sounds_key(cfg)}: cannot write {path} "
                              f"({exc.strerror or exc}): fix its permissions or free space, "
                              "then install again") from None


def install_prompts(cfg: Config, manifest: Mapping[str, Any], dest_dir: Path) -> list[Path]:
    """Copy the built wavs, content-addressed, to dest_dir/ivr/<campaign dir>/<key>-<sha12>.wav
    (what the IVR plays: contract.prompt_sound) and, when the line is this campaign's, to
    dest_dir/ivr/<key>.wav. The versions are added, never replaced nor deleted: a call in
    flight keeps its version. Returns the files installed.

    Another campaign's build is refused; every source is read and checked against the
    manifest before anything is written.
    """
    check_not_foreign(cfg, manifest)
    _check_sounds_dir(cfg, dest_dir)
    plain = _takes_plain_copies(cfg, dest_dir)
    target = Path(dest_dir) / SOUNDS_DIR
    blobs: list[tuple[Path, bytes]] = []
    for key, entry in sorted(manifest.get("prompts", {}).items()):
        data = _read_built(cfg, key, entry)
        if plain:
            blobs.append((target / f"{key}.wav", data))
        sound = prompt_sound(cfg.campaign.name, key, entry["sha256"])
        blobs.append((Path(dest_dir) / f"{sound}.wav", data))
    owner = [(target / LINE_OWNER, f"{cfg.campaign.name}\n".encode())] \
        if plain and blobs and line_owner(dest_dir) != cfg.campaign.name else []
    _write_all(cfg, target, blobs + owner)  # the owner last: once its prompts are there
    return [path for path, _ in blobs]


def install_prompts_to_pbx(cfg: Config) -> Path:
    """Install the last build; in the sandbox into instance 1's sounds folder, then hardlinked
    into every other instance's (each has its own: sandbox_nodes.py). Returns instance 1's."""
    manifest = load_manifest(cfg)
    if cfg.pbx.mode == "sandbox":
        from ivr.telephony import sandbox_nodes  # the sandbox's own folders: imported on use
        from ivr.telephony.sandbox import Sandbox
        dest = Sandbox(cfg).sounds
        sandbox_nodes.share_installed(cfg, install_prompts(cfg, manifest, dest))
        return dest
    if not cfg.pbx.sounds_dir:
        raise PbxError("pbx.sounds_dir is not set: give the Asterisk sounds folder to "
                       "install prompts into")
    dest = Path(cfg.pbx.sounds_dir)
    install_prompts(cfg, manifest, dest)
    return dest
