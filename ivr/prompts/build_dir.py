"""The build folder: made (and unmade after a failure), staged into, and locked so that one
build of it runs at a time."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ivr.errors import PromptError


def undo(created: list[Path]) -> None:
    for d in reversed(created):
        shutil.rmtree(d, ignore_errors=True)


def mkdirs(path: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (deepest last) so a failure can undo them;
    a failure midway undoes its own."""
    made: list[Path] = []
    try:
        for d in [d for d in [path, *path.parents] if not d.exists()][::-1]:
            try:
                d.mkdir()
            except FileExistsError:  # another build made it meanwhile: not ours to undo
                if not d.is_dir():
                    raise
                continue
            made.append(d)
    except BaseException:
        undo(made)
        raise
    return made


_FIX_DIR = "point it to a folder you can write to"


def _make_build_dir(build_dir: Path) -> list[Path]:
    """The build dir, created if missing (the folders made returned); a path that cannot be
    one is a line naming prompts.build_dir, not a traceback."""
    if build_dir.exists() and not build_dir.is_dir():
        raise PromptError(f"prompts.build_dir: {build_dir} is not a directory: {_FIX_DIR}")
    try:
        return mkdirs(build_dir)
    except OSError as exc:
        raise _cannot_write(build_dir, exc) from None


def new_staging(build_dir: Path, created: list[Path]) -> Path:
    """A staging folder in the build dir (the folders `created` undone if it cannot be made)."""
    try:
        return Path(tempfile.mkdtemp(dir=build_dir, prefix=".staging-"))
    except OSError as exc:
        undo(created)
        raise _cannot_write(build_dir, exc) from None


def _cannot_write(build_dir: Path, exc: OSError) -> PromptError:
    return PromptError(f"prompts.build_dir: cannot write in {build_dir} "
                       f"({exc.strerror or exc}): {_FIX_DIR}")


@contextmanager
def one_build_at_a_time(build_dir: Path) -> Iterator[list[Path]]:
    """The build folder (made if missing: the folders made are given), locked: held from
    reading the old manifest to writing the new one. A console's rebuild and an `ivr prompts
    build` at once each moved their own wavs in, and the later manifest could describe the
    other's audio (the page's listen button played what its fingerprint did not name). The
    folder itself is locked, read-only (a folder root made is locked by the console's user
    as well); one a failed build removed while this one waited is made and locked again."""
    while True:
        created = _make_build_dir(build_dir)
        try:
            fd = os.open(build_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # removed meanwhile by a failed build: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(build_dir))
            except FileNotFoundError:
                same = False
            if same:
                yield created
                return
        finally:
            os.close(fd)  # releases the lock
