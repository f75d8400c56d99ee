"""Several sandbox Asterisk instances from the one cached root: `ivr pbx up --nodes N`.

Instance 1 is the sandbox of sandbox.py, unchanged (/etc/asterisk, AMI on pbx.port, SIP on
5060, .sandbox/asterisk.pid, sounds in /usr/share/asterisk/sounds). Instance i > 1 runs from the
same root with its own `asterisk.conf` (-C /etc/asterisk-n<i>/asterisk.conf): its own etc, db,
spool, run, log and data directories, AMI on pbx.port + i - 1, SIP on 5060 + 2 (i - 1), pid file
.sandbox/asterisk-n<i>.pid. Modules and var/lib are shared.

Sounds: Asterisk 22 has no astsoundsdir (it plays from astdatadir/sounds), so instance i's
astdatadir is /usr/share/asterisk-n<i>: its own sounds/ folder, the other data entries
(documentation, keys, ...) symlinks to instance 1's. At each `up` that folder gets what
instance 1's has (stock sounds, the simulated callees' sounds, installed prompts) as hardlinks
(same filesystem: no second copy of the data); symlinks that led into instance 1's sounds are
re-pointed into its own. Prompts are installed into instance 1's folder then hardlinked into
every other (share_installed); live.py waits for a version in every folder and prune removes
from every folder (sounds_dirs). Every instance has the same AMI users and secret, and the same
[globals] (one FastAGI URL): the controller's pool names them in pbx.nodes (README).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from ivr.config import Config
from ivr.errors import SandboxError
from ivr.telephony.sandbox import Sandbox, Status, port_open

MAX_NODES = 9
PID_NAME = re.compile(r"asterisk-n(\d+)\.pid")
DATA_NAME = re.compile(r"asterisk-n(\d+)")  # /usr/share/asterisk-n<i>: instance i's astdatadir


class SandboxNode(Sandbox):
    """Instance `index` (> 1) of the sandbox."""

    def __init__(self, cfg: Config, index: int) -> None:
        super().__init__(cfg)
        self.index = index
        self.label = f"node {index}: "
        self.pidfile = self.state / f"asterisk-n{index}.pid"
        self.logfile = self.state / f"asterisk-n{index}.log"
        self.ami_port = cfg.pbx.port + index - 1
        self.sip_port = 5060 + 2 * (index - 1)
        tag = f"asterisk-n{index}"
        self.dirs = (f"var/run/{tag}", f"var/log/{tag}", f"var/spool/{tag}", f"var/lib/{tag}db")
        self.conf_path = f"/etc/{tag}/asterisk.conf"
        self.datadir = f"/usr/share/{tag}"

    @property
    def etc(self) -> Path:
        return self.root / f"etc/asterisk-n{self.index}"

    def asterisk(self, *args: str) -> list[str]:
        return super().asterisk("-C", self.conf_path, *args)

    def asterisk_conf(self, etc: str = "", db: str = "", spool: str = "", run: str = "",
                      log: str = "", data: str = "") -> str:
        tag = f"asterisk-n{self.index}"
        return super().asterisk_conf(f"/etc/{tag}", f"/var/lib/{tag}db", f"/var/spool/{tag}",
                                     f"/var/run/{tag}", f"/var/log/{tag}", self.datadir)

    def install(self, sim_timing: dict[str, float] | None = None) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        super().install(sim_timing)

    def _sim_sounds(self) -> None:
        """Called by install(): this instance's own data directory and sounds, from
        instance 1's (whose simulated callees' sounds are made first if missing)."""
        first = Sandbox(self.cfg)
        first._sim_sounds()
        data = self.sounds.parent
        data.mkdir(parents=True, exist_ok=True)
        for entry in (self.root / first.datadir.lstrip("/")).iterdir():
            link = data / entry.name
            if entry.name != "sounds" and not link.is_symlink() and not link.exists():
                link.symlink_to(os.path.relpath(entry, data))  # relative: same in the chroot
        mirror(first.sounds, self.sounds, self.root)


def instance(cfg: Config, index: int) -> Sandbox:
    return Sandbox(cfg) if index == 1 else SandboxNode(cfg, index)


def started(cfg: Config) -> list[int]:
    """The instances with a pid file (1 always listed first: it is the sandbox itself)."""
    state = cfg.path(cfg.pbx.sandbox_dir)
    found = sorted(int(m.group(1)) for p in state.glob("asterisk-n*.pid")
                   if (m := PID_NAME.fullmatch(p.name)) and int(m.group(1)) > 1)
    return [1, *found]


def up(cfg: Config, nodes: int, timeout: float, sim_timing: dict[str, float] | None,
       log: Callable[[str], None] = print) -> list[tuple[int, Status]]:
    """Exactly `nodes` instances up (idempotent): 1..nodes started or refreshed, any higher
    one left by an earlier `up --nodes` stopped."""
    if not 1 <= nodes <= MAX_NODES:
        raise SandboxError(f"--nodes {nodes}: use 1 to {MAX_NODES} instances")
    instance(cfg, 1).prepare(log)  # its errors (not root, no mmdebstrap) come first
    check_ports(cfg, nodes)
    for extra in [i for i in started(cfg) if i > nodes]:
        instance(cfg, extra).down()
    return [(i, instance(cfg, i).up(timeout=timeout, sim_timing=sim_timing, log=log))
            for i in range(1, nodes + 1)]


def check_ports(cfg: Config, nodes: int) -> None:
    """Every instance to start finds its AMI port free, checked before any starts: a port
    taken by another program leaves nothing half-started."""
    for i in range(1, nodes + 1):
        sb = instance(cfg, i)
        if sb._pid() is None and port_open("127.0.0.1", sb.ami_port):
            if nodes == 1:
                sb.port_taken()
            raise SandboxError(
                f"node {i}: port {sb.ami_port} is already in use, no node was started: stop the "
                f"other Asterisk/AMI service or set pbx.port in config.yaml (nodes 1 to {nodes} "
                f"use AMI ports {cfg.pbx.port} to {cfg.pbx.port + nodes - 1})")


def down(cfg: Config) -> list[tuple[int, bool]]:
    """Stop every instance `up` started (by their pid files), the extra ones first. One that
    cannot be stopped does not keep the others running: every one is tried, then one error
    names those left."""
    done: list[tuple[int, bool]] = []
    failed: list[str] = []
    nodes = started(cfg)
    for i in reversed(nodes):
        try:
            done.append((i, instance(cfg, i).down()))
        except (SandboxError, OSError) as exc:  # one node alone: its message as before
            failed.append(f"node {i}: {exc}" if len(nodes) > 1 else str(exc))
    if failed:
        stopped = [f"node {i}" for i, ok in done if ok]
        raise SandboxError("; ".join(failed) + (f" ({', '.join(stopped)} stopped)"
                                                if stopped else ""))
    return done


def status(cfg: Config) -> list[tuple[int, Sandbox, Status]]:
    return [(i, sb, sb.status()) for i in started(cfg) for sb in [instance(cfg, i)]]


def sounds_dirs(cfg: Config) -> list[Path]:
    """Every instance's own sounds folder, instance 1's first: the started ones and any other
    an earlier `up --nodes` made (a stopped instance's folder stays current for its restart)."""
    first = Sandbox(cfg)
    found = {i for i in started(cfg) if i > 1}
    share = first.root / "usr/share"
    found |= {int(m.group(1)) for p in share.glob("asterisk-n*")
              if (m := DATA_NAME.fullmatch(p.name)) and int(m.group(1)) > 1 and p.is_dir()}
    return [first.sounds, *(SandboxNode(cfg, i).sounds for i in sorted(found))]


def share_installed(cfg: Config, paths: Iterable[Path]) -> int:
    """Prompt files just installed into instance 1's sounds, hardlinked at the same place in
    every other instance's. How many links were made or replaced."""
    first, *others = sounds_dirs(cfg)
    files = list(paths)
    return sum(link_file(p, other / p.relative_to(first)) for other in others for p in files)


def link_file(src: Path, dst: Path) -> int:
    """dst made the same file as src: a hardlink (a copy across filesystems), swapped in by a
    rename, so a call playing dst's old file keeps it. 1 if dst changed, 0 if it already was."""
    try:
        if os.path.samefile(src, dst):
            return 0
    except OSError:  # dst missing
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return 1


def mirror(src: Path, dst: Path, root: Path) -> int:
    """Every file of src hardlinked at the same place under dst, every symlink copied (re-pointed
    into dst when it led into src, as seen inside the chroot `root`). Nothing of dst is removed:
    prune removes from every folder itself. How many files were linked or replaced."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(src):  # symlinked dirs are not walked into
        here = Path(dirpath)
        there = dst / here.relative_to(src)
        there.mkdir(parents=True, exist_ok=True)
        for name in (*dirnames, *filenames):
            if name.startswith("."):  # another writer's temporary file
                continue
            s, d = here / name, there / name
            if s.is_symlink():
                _copy_link(s, d, src, dst, root)
            elif s.is_file():
                changed += link_file(s, d)
    return changed


def _copy_link(s: Path, d: Path, src: Path, dst: Path, root: Path) -> None:
    target = os.readlink(s)
    inside = "/" + str(src.relative_to(root))
    final = _chroot_target(root, "/" + str(s.relative_to(root)))
    if final == inside or final.startswith(inside + "/"):  # e.g. en -> .../sounds/en_US_f_Allison
        target = os.path.relpath(dst / os.path.relpath(final, inside), d.parent)
    if d.is_symlink() and os.readlink(d) == target:
        return
    if d.exists() and not d.is_symlink():
        return  # a real file or folder there: left alone
    tmp = d.with_name(f".{d.name}.{os.getpid()}.lnk")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, d)


def _chroot_target(root: Path, link: str) -> str:
    """Where a symlink chain ends, as a path inside the chroot (absolute links are the chroot's,
    e.g. /etc/alternatives/...; only the last component of each hop is followed)."""
    path = link
    for _ in range(8):
        host = root / path.lstrip("/")
        if not host.is_symlink():
            break
        nxt = os.readlink(host)
        path = nxt if nxt.startswith("/") else os.path.normpath(
            os.path.join(os.path.dirname(path), nxt))
    return path
