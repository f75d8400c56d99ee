"""The sandbox's cached root without a real Asterisk: who owns the folders its Asterisk (root)
reads, a dialplan folder someone else planted, a pid file whose Asterisk runs from another
root (another IVR_SANDBOX_CACHE), and a taken AMI port of a later node."""
from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ivr.cli import cli
from ivr.errors import SandboxError
from ivr.telephony import sandbox, sandbox_nodes
from ivr.telephony.sandbox import Sandbox
from ivr.telephony.sandbox_root import write_file

from conftest import make_config

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")
OTHER = 4242  # the chroot's `asterisk` user (uid 101), another account on the host
VICTIM = 5555


def _cfg(tmp_path: Path, port: int = 6038):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, pbx={"port": port, "sandbox_dir": "sb"})


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built root in miniature, as Debian's package leaves it: the asterisk folders owned by
    its `asterisk` user. `up` stops at its port check (told the port is taken): no Asterisk."""
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(sandbox, "port_open", lambda *a, **k: True)
    r = tmp_path / "cache/root"
    (r / "usr/sbin").mkdir(parents=True)
    (r / "usr/sbin/asterisk").write_bytes(b"")
    sim = r / "usr/share/asterisk/sounds/ivr-sim"
    sim.mkdir(parents=True)
    for name in ("silence", "hello", "machine-greeting"):
        (sim / f"{name}.wav").write_bytes(b"RIFF " + name.encode())
    for rel in ("etc/asterisk", "var/lib/asterisk/keys", "var/log/asterisk",
                "var/spool/asterisk"):
        (r / rel).mkdir(parents=True)
    (r / "var/lib/asterisk/keys/k.pem").write_text("key")
    os.chmod(r / "var/lib/asterisk/keys/k.pem", 0o666)
    for dirpath, _, files in os.walk(r / "var/lib/asterisk"):
        for p in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            os.chown(p, OTHER, OTHER)
    for rel in ("etc/asterisk", "var/log/asterisk", "var/spool/asterisk"):
        os.chown(r / rel, OTHER, OTHER)
        os.chmod(r / rel, 0o775)
    return r


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of someone else's that nothing may write, chown or chmod."""
    v = tmp_path / "victim"
    v.write_text("secret")
    os.chown(v, VICTIM, VICTIM)
    os.chmod(v, 0o666)
    return v


def _unchanged(v: Path) -> bool:
    st = v.stat()
    return (v.read_text(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == \
        ("secret", VICTIM, VICTIM, 0o666)


@as_root
def test_up_refuses_a_dialplan_folder_someone_else_made(root: Path, victim: Path,
                                                        tmp_path: Path) -> None:
    ivr = root / "etc/asterisk/ivr"  # `mkdir ivr && ln -s /victim ivr/ivr-sim.conf` as uid 101
    ivr.mkdir()
    (ivr / "ivr-sim.conf").symlink_to(victim)
    os.lchown(ivr / "ivr-sim.conf", OTHER, OTHER)
    os.chown(ivr, OTHER, OTHER)
    with pytest.raises(SandboxError, match=f"^{ivr} is owned by uid {OTHER}, not root: .*"
                                           f"remove it \\(rm -r {ivr}\\)"):
        Sandbox(_cfg(tmp_path)).up()
    assert _unchanged(victim)


@as_root
def test_up_refuses_a_dialplan_folder_that_is_a_symlink(root: Path, victim: Path,
                                                        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ivr-sim.conf").symlink_to(victim)
    (root / "etc/asterisk/ivr").symlink_to(elsewhere)
    with pytest.raises(SandboxError, match="etc/asterisk/ivr is a symlink: .*remove it"):
        Sandbox(_cfg(tmp_path)).up()
    assert _unchanged(victim) and os.listdir(elsewhere) == ["ivr-sim.conf"]


@as_root
def test_up_makes_the_asterisk_folders_root_s_and_writes_through_no_symlink(
        root: Path, victim: Path, tmp_path: Path) -> None:
    # Planted while the folders were uid 101's: links to the victim, in the dialplan folder
    # (root's) and in var/lib/asterisk.
    (root / "etc/asterisk/ivr").mkdir()
    (root / "etc/asterisk/ivr/ivr-sim.conf").symlink_to(victim)
    (root / "etc/asterisk/modules.conf").symlink_to(victim)
    (root / "var/lib/asterisk/link").symlink_to(victim)
    os.lchown(root / "var/lib/asterisk/link", OTHER, OTHER)
    # var/run -> /run in the Debian root: the host's folder, never touched.
    host_run = tmp_path / "host-run"
    (host_run / "asterisk").mkdir(parents=True)
    os.chown(host_run / "asterisk", VICTIM, VICTIM)
    (root / "var/run").symlink_to(host_run)
    with pytest.raises(SandboxError, match="is already in use"):
        Sandbox(_cfg(tmp_path)).up()
    assert _unchanged(victim)
    sim = root / "etc/asterisk/ivr/ivr-sim.conf"
    assert not sim.is_symlink() and sim.read_text() == \
        (sandbox.DIALPLANS_DIR / "ivr-sim.conf").read_text()
    assert not (root / "etc/asterisk/modules.conf").is_symlink()
    for rel in ("etc/asterisk", "etc/asterisk/ivr", "var/lib/asterisk",
                "var/lib/asterisk/keys", "var/lib/asterisk/keys/k.pem", "var/lib/asterisk/link",
                "var/log/asterisk", "var/spool/asterisk"):
        st = os.lstat(root / rel)
        assert (st.st_uid, st.st_gid) == (0, 0), rel
        assert stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022, rel
    assert (host_run / "asterisk").stat().st_uid == VICTIM


@as_root
def test_up_makes_asterisk_s_cache_folder_root_s(root: Path, tmp_path: Path) -> None:
    """var/cache/asterisk (astcachedir) is uid 101's too in Debian's package."""
    cache = root / "var/cache/asterisk"
    (cache / "sub").mkdir(parents=True)
    (cache / "sub/f").write_text("x")
    for p in (cache, cache / "sub", cache / "sub/f"):
        os.chown(p, OTHER, OTHER)
        os.chmod(p, 0o775)
    with pytest.raises(SandboxError, match="is already in use"):
        Sandbox(_cfg(tmp_path)).up()
    for p in (cache, cache / "sub", cache / "sub/f"):
        st = p.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o022) == (0, 0, 0), p


def test_write_file_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "dir/x.conf"
    link.parent.mkdir()
    link.symlink_to(target)
    write_file(link, b"new")
    assert not link.is_symlink() and link.read_text() == "new" and target.read_text() == "keep"
    assert stat.S_IMODE(link.stat().st_mode) == 0o644 and os.listdir(link.parent) == ["x.conf"]


# -- a pid file whose Asterisk runs from another root --------------------------------------

def test_an_empty_ivr_sandbox_cache_is_unset() -> None:
    code = "from ivr.telephony import sandbox; print(sandbox.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, IVR_SANDBOX_CACHE=""), check=True).stdout
    assert out.strip() == "/var/cache/ivr-sandbox"


def _in_pid_file(cmd: list[str], pidfile: Path) -> subprocess.Popen[bytes]:
    """`cmd` started, its pid written to `pidfile` once its command line says asterisk, and
    chroot has exec'd into the root (its own argv names asterisk too: on a loaded machine the
    test then read /proc/PID/root before the chroot, and down() saw no other root)."""
    proc = subprocess.Popen(cmd)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + 5
    while "asterisk" not in (line := Path(f"/proc/{proc.pid}/cmdline").read_text()) or \
            line.startswith("chroot\0"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def fake_sandbox_root(root: Path) -> Path:
    """A root another IVR_SANDBOX_CACHE could hold, in miniature: sleep as usr/sbin/asterisk,
    with the libraries it loads."""
    binary = shutil.which("sleep") or "/bin/sleep"
    (root / "usr/sbin").mkdir(parents=True)
    shutil.copy(binary, root / "usr/sbin/asterisk")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", ldd):
        (root / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / lib.lstrip("/"))
    return root


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The pid file's process: the Asterisk of another sandbox root (tmp_path/other/root),
    chrooted there, as `ivr pbx up` run with another IVR_SANDBOX_CACHE starts it."""
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    other = fake_sandbox_root(tmp_path / "other/root")
    proc = _in_pid_file(["chroot", str(other), "/usr/sbin/asterisk", "60"],
                        tmp_path / "sb/asterisk.pid")
    yield proc.pid
    proc.kill()
    proc.wait()


@as_root
def test_down_keeps_the_pid_file_of_an_asterisk_from_another_root(elsewhere: int,
                                                                   tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pidfile = tmp_path / "sb/asterisk.pid"
    with pytest.raises(SandboxError, match=f"^Asterisk pid {elsewhere} .*runs from the root "
                                           f"{tmp_path}/other/root, not {tmp_path}/cache/root: "
                                           f".*IVR_SANDBOX_CACHE={tmp_path}/other "):
        sandbox_nodes.down(cfg)
    assert pidfile.read_text() == str(elsewhere) and Path(f"/proc/{elsewhere}").exists()
    assert "IVR_SANDBOX_CACHE" in Sandbox(cfg).status().detail


@pytest.mark.parametrize("where", ["host", "root without usr/sbin/asterisk"])
def test_down_clears_a_stale_pid_file_of_a_process_that_only_mentions_asterisk(
        where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After pid reuse the pid file's pid may be `tail -f .sandbox/asterisk.log` (or a host
    Asterisk): not another sandbox's Asterisk, so the file is stale; the process is left be."""
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    pidfile = tmp_path / "sb/asterisk.pid"
    if where == "host":
        cmd = [sys.executable, "-c", "import time; time.sleep(60)", "/x/.sandbox/asterisk.log"]
    else:
        if os.geteuid() != 0:
            pytest.skip("chroot needs root")
        other = fake_sandbox_root(tmp_path / "other/root")
        (other / "bin").mkdir()  # an asterisk binary, but not where a sandbox root has it
        (other / "usr/sbin/asterisk").rename(other / "bin/asterisk")
        cmd = ["chroot", str(other), "/bin/asterisk", "60"]
    proc = _in_pid_file(cmd, pidfile)
    try:
        cfg = _cfg(tmp_path)
        assert "IVR_SANDBOX_CACHE" not in Sandbox(cfg).status().detail
        assert sandbox_nodes.down(cfg) == [(1, False)]
        assert not pidfile.exists() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@as_root
def test_pbx_down_from_another_cache_is_an_error_not_a_stop(elsewhere: int,
                                                           tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"pbx": {"sandbox_dir": str(tmp_path / "sb")}}))
    res = CliRunner().invoke(cli, ["--config", str(cfg_file), "pbx", "down"])
    assert res.exit_code == 1 and "was not running" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Asterisk pid") \
        and "IVR_SANDBOX_CACHE=" in lines[0]
    assert (tmp_path / "sb/asterisk.pid").read_text() == str(elsewhere)


def test_down_still_clears_a_pid_file_whose_process_is_gone(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, "-c", "pass", "asterisk"])
    proc.wait()
    (tmp_path / "sb").mkdir()
    (tmp_path / "sb/asterisk.pid").write_text(str(proc.pid))
    assert Sandbox(_cfg(tmp_path)).down() is False
    assert not (tmp_path / "sb/asterisk.pid").exists()


# -- a taken AMI port: checked for every node before any starts ----------------------------

def _listener_after_two_free_ports() -> socket.socket:
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        if port > 1026 and not any(sandbox.port_open("127.0.0.1", p) for p in (port - 2,
                                                                               port - 1)):
            return s
        s.close()
    raise AssertionError("no port with two free ones below it")


def test_a_taken_port_of_node_3_starts_no_node_and_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    started: list[int] = []
    monkeypatch.setattr(Sandbox, "up", lambda self, **kw: started.append(self.ami_port))
    monkeypatch.setattr(Sandbox, "prepare", lambda self, log: None,  # no root to build
                        raising=False)
    with _listener_after_two_free_ports() as taken:
        port = taken.getsockname()[1]
        cfg = _cfg(tmp_path, port=port - 2)
        with pytest.raises(SandboxError, match=f"^node 3: port {port} is already in use, no "
                                               "node was started: .*pbx.port"):
            sandbox_nodes.up(cfg, 3, 1, None)
        assert started == []
        # One instance: the message as before.
        with pytest.raises(SandboxError, match=f"^port {port} is already in use: stop the other "
                                               "Asterisk/AMI service or set pbx.port"):
            sandbox_nodes.up(_cfg(tmp_path, port=port), 1, 1, None)
        assert started == []
    sandbox_nodes.up(cfg, 3, 1, None)  # freed: every node starts
    assert started == [port - 2, port - 1, port]


def test_a_run_folder_is_made_where_the_chroot_sees_it(tmp_path: Path) -> None:
    """Debian's var/run is a symlink to /run: followed from the host, `ivr pbx up` made
    /run/asterisk-n2 on the host itself (useless to the chroot, and a system Asterisk's
    place). It is followed inside the root now (sandbox_root.in_root)."""
    from ivr.telephony.sandbox_root import in_root
    root = tmp_path / "root"
    (root / "var").mkdir(parents=True)
    (root / "var" / "run").symlink_to("/run")
    (root / "var" / "lock").symlink_to("../run/lock")  # relative: inside the root too
    assert in_root(root, "var/run/asterisk-n2") == root / "run" / "asterisk-n2"
    assert in_root(root, "var/lock/x") == root / "run" / "lock" / "x"
    assert in_root(root, "var/log/asterisk-n2") == root / "var" / "log" / "asterisk-n2"
    (root / "loop").symlink_to("loop")  # a loop ends, inside the root
    assert str(in_root(root, "loop/x")).startswith(str(root))
