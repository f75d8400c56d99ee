"""The sandbox's cached Debian root: built once by mmdebstrap (build), and only root may change
what its Asterisk reads: it runs as root (asterisk.conf sets no runuser), chrooted there.

Debian's asterisk package gives /etc/asterisk, /var/lib/asterisk, /var/log/asterisk and
/var/spool/asterisk to the chroot's `asterisk` user (uid 101), which on the host is another
account (e.g. postgres): whoever that is could plant a symlink where `ivr pbx up`, as root,
writes the dialplans. So at each `up` (and once the root is built) these folders become
root's and not group/other-writable (harden), files are written by a rename in their folder,
never through a symlink (write_file), and a dialplan folder someone else made is refused
(check_dialplan_dir).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ivr.errors import SandboxError

# The chroot folders Debian gives to its `asterisk` user (var/cache/asterisk: astcachedir).
CHROOT_DIRS = ("etc/asterisk", "var/lib/asterisk", "var/log/asterisk", "var/spool/asterisk",
               "var/cache/asterisk")
ASTERISK_REL = "usr/sbin/asterisk"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def harden(root: Path, rels: Iterable[str]) -> None:
    """`chown -R root:root` and `chmod -R go-w` on each folder `rel` of `root` that exists,
    following no symlink. A folder whose parent leads out of the root (var/run -> /run, the
    host's) is left alone: it is not the chroot's."""
    for rel in rels:
        path = root / rel
        if not _inside(root, path.parent):
            continue
        try:
            fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            continue
        except OSError as exc:  # ELOOP/ENOTDIR: a symlink or a file where the folder goes
            raise SandboxError(f"{path} is not a folder ({exc.strerror}): remove it and run "
                               "`ivr pbx up` again") from exc
        try:
            _fix_tree(fd)
        finally:
            os.close(fd)


def in_root(root: Path, rel: str) -> Path:
    """The host path of `rel` as a process chrooted into `root` sees it: a symlink in the
    root (Debian's var/run -> /run, absolute) is followed inside the root, never out to the
    host's own /run (where `ivr pbx up` used to make asterisk folders, useless to the chroot
    and in a system Asterisk's place)."""
    parts, done, hops = [p for p in rel.split("/") if p], root, 0
    while parts:
        part = parts.pop(0)
        if part in (".", ".."):  # never above the root, as in the chroot
            done = done.parent if part == ".." and done != root else done
            continue
        here = done / part
        if here.is_symlink() and hops < 40:
            hops += 1
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p] + parts
            done = root if target.startswith("/") else done
            continue
        done = here
    return done


def _inside(root: Path, path: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


def _fix_tree(fd: int) -> None:
    """The folder open on `fd` first, then its entries: once the folder is root's and not
    writable by others, nobody else can swap an entry for a symlink while they are fixed."""
    _fix(fd)
    for name in os.listdir(fd):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            flags = _DIR_FLAGS if stat.S_ISDIR(st.st_mode) else (
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
            sub = os.open(name, flags, dir_fd=fd)
            try:
                _fix_tree(sub) if stat.S_ISDIR(st.st_mode) else _fix(sub)
            finally:
                os.close(sub)
        elif st.st_uid or st.st_gid:  # symlinks, sockets, fifos: the entry itself, not its target
            os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)


def _fix(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_uid or st.st_gid:
        os.fchown(fd, 0, 0)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        os.fchmod(fd, mode & ~0o022)


def runs_sandbox_asterisk(pid: int, root: Path) -> bool:
    """Whether process `pid`, chrooted in `root`, runs an asterisk binary of that root and the
    root holds usr/sbin/asterisk, as a sandbox cache root does. A process of the host's root
    ("/") is not one, even one whose command line says asterisk."""
    top = os.path.normpath(root)
    if top == "/" or not (Path(top) / ASTERISK_REL).is_file():
        return False
    try:  # " (deleted)": the binary was replaced (apt upgrade in the root) while it ran
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return False
    return os.path.basename(exe) == "asterisk" and exe.startswith(top + os.sep)


def check_dialplan_dir(folder: Path) -> None:
    """Refuse a dialplan folder that is a symlink or that someone else owns: what it holds
    (or leads to) is not what `up` wrote. One that does not exist yet is fine."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise SandboxError(f"{folder} is {kind}: the dialplans go in a folder of root's; remove "
                           f"it (rm {folder}) and run `ivr pbx up` again")
    if st.st_uid != os.geteuid():
        raise SandboxError(f"{folder} is owned by uid {st.st_uid}, not root: someone else may "
                           f"have changed its dialplans; remove it (rm -r {folder}) and run "
                           "`ivr pbx up` again")


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """`data` into `path` by a rename in its folder: a symlink planted at `path` is replaced,
    never written through."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def build(root: Path, cache: Path, log: Callable[[str], None]) -> None:
    """The Debian root with Asterisk, by mmdebstrap, at `root` (in the folder `cache`)."""
    if os.geteuid() != 0:
        raise SandboxError("building the sandbox needs root: run as root (sudo ivr pbx up)")
    if shutil.which("mmdebstrap") is None:
        raise SandboxError("mmdebstrap not found: apt-get install -y mmdebstrap")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"root.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"building the Asterisk root in {root} (once, about 30 s)")
    cmd = ["mmdebstrap", "--variant=apt", "--aptopt=Acquire::Check-Valid-Until \"false\"",
           "--include=asterisk", "sid", str(tmp), _debian_mirror()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"mmdebstrap failed ({last}): check that apt can reach the mirror")
    harden(tmp, CHROOT_DIRS)  # Debian gives them to uid 101, another account on the host
    tmp.rename(root)  # atomic: a half-built root is never taken for a good one


def _debian_mirror() -> str:
    """The Debian mirror the host's apt already uses (the only one reachable here)."""
    for src in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in src.read_text().splitlines():
            m = re.match(r"URIs:\s*(\S+)", line)
            if m and "security" not in m.group(1) and "debian" in m.group(1):
                return m.group(1)
    lst = Path("/etc/apt/sources.list")
    if lst.exists():
        for line in lst.read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", line)
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"
