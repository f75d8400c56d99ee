"""`ivr db` where root lacks CAP_SYS_PTRACE (Docker's default capabilities): /proc/<pid>/cwd of
the postgres-owned server cannot be read (EACCES), yet our live cluster is ours (status running,
down stops it, up never removes its postmaster.pid); another cluster's server is still told
apart by its `-D`; a postgres that cannot be seen into is never taken for stale
(ivr/store/pg_postmaster.py, ivr/store/pg_cluster.py)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import yaml

from conftest import _pg_unavailable
from ivr.errors import StoreError
from ivr.store.pg_cluster import PgCluster, bindir
from ivr.store.pg_postmaster import Claim, claim

if _pg_unavailable() and not os.environ.get("CI"):
    pytest.skip(f"no PostgreSQL here: {_pg_unavailable()}", allow_module_level=True)

import test_pg_cluster  # noqa: E402  (after the skip: it needs PostgreSQL)
from test_pg_cluster import _free_port  # noqa: E402

_readlink = os.readlink


@contextmanager
def no_ptrace(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """readlink of /proc/<pid>/cwd fails as it does for root without CAP_SYS_PTRACE."""
    def readlink(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        p = str(path)
        if "/proc/" in p and p.endswith("/cwd"):  # the fake /proc below too
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return _readlink(path, *args, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(os, "readlink", readlink)
        yield


def _alive(pid: int) -> bool:
    """Running (a zombie left for a parent that does not reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _stop(c: PgCluster) -> None:
    """Stop it whatever its status says (the code before the fix lost sight of it), but only
    a server started on its own data directory: a pid file a test forged names another
    cluster's process, and pg_ctl's SIGQUIT to it crashed that cluster (CI: cluster A's
    checkpointer, then A's fast shutdown did not end in 60 s)."""
    c.down()
    pid_file = c.data / "postmaster.pid"
    if pid_file.exists() and _started_on(_first_pid(pid_file), c.data):
        c._as_owner([str(bindir() / "pg_ctl"), "-D", str(c.data), "-m", "immediate", "-w",
                     "stop"])


def _first_pid(pid_file: Path) -> int:
    """The pid file's first line; 0 (no process) when it is empty or half-written: the
    clean-up must not hide the test's own failure."""
    try:
        return int(pid_file.read_text().split()[0])
    except (ValueError, IndexError, FileNotFoundError):
        return 0


def _started_on(pid: int, data: Path) -> bool:
    """Whether process `pid` is a postgres started with `-D data` (read from its cmdline,
    which root reads without ptrace)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return str(data) in args or f"-D{data}" in args


own_dir = test_pg_cluster.own_dir  # under /tmp, traversable by the postgres user


@pytest.fixture
def cluster(own_dir: Path) -> Iterator[PgCluster]:
    c = PgCluster(own_dir / "pg", _free_port(55460), fast=True)
    try:
        yield c
    finally:
        _stop(c)


def test_our_live_cluster_is_ours_without_ptrace(cluster: PgCluster,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """status running; up on another db.port refuses, the pid file kept; down stops it."""
    pid = cluster.up().pid
    assert pid is not None
    pid_file = (cluster.data / "postmaster.pid").read_text()
    with no_ptrace(monkeypatch):
        with pytest.raises(PermissionError):
            os.readlink(f"/proc/{pid}/cwd")  # the fallback, not the link, decides below
        st = cluster.status()
        assert (st.running, st.pid, st.port) == (True, pid, cluster.port)
        assert cluster.up().pid == pid
        moved = PgCluster(cluster.base, _free_port(55460), fast=True)
        with pytest.raises(StoreError, match=f"runs on port {cluster.port}, not db.port"):
            moved.up()
        assert (cluster.data / "postmaster.pid").read_text() == pid_file
        assert _alive(pid)
        assert cluster.down() is True
        assert not _alive(pid) and not cluster.status().running


@pytest.mark.parametrize("ptrace", [True, False], ids=["ptrace", "no ptrace"])
def test_a_pid_file_naming_another_live_cluster_is_stale(
        cluster: PgCluster, own_dir: Path, monkeypatch: pytest.MonkeyPatch,
        ptrace: bool) -> None:
    """Cluster A runs; B's postmaster.pid names A's pid, copied from A (A's data dir in it)
    or B's own after a reboot (B's data dir, the pid reused by A): B is stopped, B's down
    does not stop A, and B's up starts B beside it. Without ptrace A's `-D` tells it apart."""
    a_pid = cluster.up().pid
    assert a_pid is not None
    b = PgCluster(own_dir / "b", _free_port(55460), fast=True)
    try:
        b.up()
        b.down()
        planted = (cluster.data / "postmaster.pid").read_text().splitlines()
        rebooted = [planted[0], str(b.data), *planted[2:]]
        with nullcontext() if ptrace else no_ptrace(monkeypatch):
            for lines in (planted, rebooted):
                (b.data / "postmaster.pid").write_text("\n".join(lines) + "\n")
                st = b.status()
                assert (st.running, st.pid, st.port) == (False, None, b.port)
                assert b.down() is False
                assert _alive(a_pid) and cluster.status().pid == a_pid
            st = b.up()
            assert st.running and st.pid != a_pid and st.port == b.port
            assert b.down() is True
            assert _alive(a_pid) and cluster.status().pid == a_pid
    finally:
        _stop(b)


def test_a_postgres_not_seen_into_is_never_taken_for_stale(
        cluster: PgCluster, own_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B's postmaster.pid (B's folder in it) names one of A's backends, whose title replaced
    its `-D`: without ptrace nobody can tell whose it is, so up refuses in one line and
    leaves the file as it was."""
    a_pid = cluster.up().pid
    children = Path(f"/proc/{a_pid}/task/{a_pid}/children").read_text().split()
    backend = int(children[0])
    assert "-D" not in Path(f"/proc/{backend}/cmdline").read_bytes().decode().split("\0")
    b = PgCluster(own_dir / "b", _free_port(55460), fast=True)
    try:
        b.up()
        b.down()
        lines = (cluster.data / "postmaster.pid").read_text().splitlines()
        text = "\n".join([str(backend), str(b.data), *lines[2:]]) + "\n"
        (b.data / "postmaster.pid").write_text(text)
        with no_ptrace(monkeypatch):
            assert not b.status().running and b.down() is False
            with pytest.raises(StoreError) as err:
                b.up()
        pid_file = b.data / "postmaster.pid"
        assert str(err.value) == (
            f"cannot tell whether process {backend}, named by {pid_file}, is this cluster's "
            f"server: if `ps -o args -p {backend}` does not show -D {b.data}, remove "
            f"{pid_file}, then `ivr db up` again")
        assert pid_file.read_text() == text
        assert _alive(a_pid) and _alive(backend)
    finally:
        _stop(b)
    assert "reinitializing" not in cluster.log.read_text()  # the clean-up left A alone


def _fake_proc(root: Path, pid: int, comm: str, args: list[str], uid: int) -> None:
    here = root / str(pid)
    here.mkdir(parents=True)
    (here / "comm").write_text(comm + "\n")
    (here / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in args))
    (here / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def test_the_fallback_needs_our_dash_d_and_the_data_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ptrace: ours only for `-D <our data>` run by the data directory's owner;
    another `-D` or another program is positively not ours; no `-D`, a relative one or
    another uid cannot be decided; no process is gone."""
    data = tmp_path / "pg" / "data"
    data.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "pg")
    owner, proc, pg = data.stat().st_uid, tmp_path / "proc", "/usr/lib/postgresql/15/bin/postgres"
    cases = {
        1: ("postgres", [pg, "-D", str(data)], owner, Claim.OURS),
        2: ("postgres", [pg, f"-D{link}/data"], owner, Claim.OURS),
        3: ("postgres", [pg, "-D", str(data)], owner + 1, Claim.UNKNOWN),
        4: ("postgres", [pg, "-D", "/var/lib/postgresql/15/main", "-c", "x=1"], owner,
            Claim.OTHER),
        5: ("postgres", ["postgres: 15/main: checkpointer "], owner, Claim.UNKNOWN),
        6: ("postgres", [pg, "-D", "data"], owner, Claim.UNKNOWN),
        7: ("sleep", ["sleep", "-D", str(data)], owner, Claim.OTHER),
    }
    for pid, (comm, args, uid, _) in cases.items():
        _fake_proc(proc, pid, comm, args, uid)
    with no_ptrace(monkeypatch):
        for pid, (*_, want) in cases.items():
            assert claim(pid, data, proc) is want, pid
        assert claim(99, data, proc) is Claim.GONE


def _ptrace_dropped() -> str | None:
    """Why the capsh test cannot run here (None: it can)."""
    if not shutil.which("capsh"):
        return "capsh not installed (libcap2-bin: scripts/setup.sh installs it)"
    if os.geteuid() != 0:
        return "not root: the server runs as ourselves, whose /proc/<pid>/cwd we may read"
    return None


@pytest.mark.skipif(bool(_ptrace_dropped()) and not os.environ.get("CI"),
                    reason=str(_ptrace_dropped()))
def test_ivr_db_without_cap_sys_ptrace(cluster: PgCluster, cfg_file: Path) -> None:
    """The real thing: `ivr db` under `capsh --drop=cap_sys_ptrace`, as in a container."""
    assert _ptrace_dropped() is None, _ptrace_dropped()
    pid = cluster.up().pid
    data = yaml.safe_load(cfg_file.read_text())

    def ivr_db(port: int, *args: str) -> subprocess.CompletedProcess[str]:
        data["db"] = {"port": port, "dir": str(cluster.base)}
        cfg_file.write_text(yaml.safe_dump(data))
        cmd = [sys.executable, "-c", "from ivr.cli import main; main()", "--config",
               str(cfg_file), "db", *args]
        return subprocess.run(["capsh", "--drop=cap_sys_ptrace", "--", "-c",
                               'exec "$0" "$@"', *cmd], capture_output=True, text=True)

    probe = subprocess.run(["capsh", "--drop=cap_sys_ptrace", "--", "-c",
                            f"echo dropped; readlink /proc/{pid}/cwd"], capture_output=True,
                           text=True)
    if probe.stdout.split()[:1] != ["dropped"]:  # no CAP_SETPCAP to drop one with
        if os.environ.get("CI"):  # never skipped in CI: the run must show it
            pytest.fail(f"capsh cannot drop CAP_SYS_PTRACE here: {probe.stderr.strip()}")
        pytest.skip(f"capsh cannot drop CAP_SYS_PTRACE here: {probe.stderr.strip()}")
    assert probe.returncode != 0, "the server's cwd read without ptrace: the test proves nothing"
    res = ivr_db(cluster.port, "status")
    assert res.stdout.startswith(f"running (pid {pid}) on 127.0.0.1:{cluster.port};"), res
    other = _free_port(55460)
    res = ivr_db(other, "up")
    assert res.returncode == 1 and res.stderr == (
        f"error: the private PostgreSQL in {cluster.base} runs on port {cluster.port}, not "
        f"db.port {other}: `ivr db down` first, then `ivr db up`\n"), res
    assert (cluster.data / "postmaster.pid").exists() and _alive(pid)
    res = ivr_db(cluster.port, "down")
    assert res.stdout == "stopped\n", res
    assert not _alive(pid)
