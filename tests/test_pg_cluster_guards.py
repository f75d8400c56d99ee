"""`ivr db` guards (ivr/store/pg_cluster.py): a stale postmaster.pid naming another live
postgres is not our server (status, down and up leave that server alone); db.dir is taken
only when new, empty or ours (never a shared folder made 0700 and the postgres user's); a
lost password file is said in one line before anything starts, and a failed login in up is
one line too, with nothing left running."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import _pg_unavailable
from ivr.cli import cli
from ivr.errors import StoreError
from ivr.secret_files import write_secret
from ivr.store.pg_cluster import INCLUDE, PgCluster, port_free

if _pg_unavailable() and not os.environ.get("CI"):
    pytest.skip(f"no PostgreSQL here: {_pg_unavailable()}", allow_module_level=True)

import test_pg_cluster  # noqa: E402  (after the skip: it needs PostgreSQL)
from test_pg_cluster import _free_port  # noqa: E402


# the same private cluster under /tmp as test_pg_cluster's
own_dir, cluster = test_pg_cluster.own_dir, test_pg_cluster.cluster


def _db_config(cfg_file: Path, base: Path, port: int) -> list[str]:
    data = yaml.safe_load(cfg_file.read_text())
    data["db"] = {"port": port, "dir": str(base)}
    cfg_file.write_text(yaml.safe_dump(data))
    return ["--config", str(cfg_file), "db"]


def test_a_folder_holding_other_files_is_refused_untouched(own_dir: Path) -> None:
    shared = own_dir / "srv"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "notes.txt").write_text("someone else's\n")
    before = shared.stat()
    c = PgCluster(shared, _free_port(55460), fast=True)
    try:
        with pytest.raises(StoreError) as err:
            c.up()
    finally:
        c.down()  # the code before the fix started a cluster there
    assert str(err.value) == (
        f"db.dir {shared} must be a dedicated folder: it holds other files, and `ivr db up` "
        "would make it the postgres user's, mode 0700; set db.dir to a new or empty folder, "
        "e.g. /var/lib/ivr-db")
    after = shared.stat()
    assert stat.S_IMODE(after.st_mode) == 0o755
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]


def test_cli_refuses_a_shared_folder_in_one_line(cfg_file: Path, own_dir: Path) -> None:
    shared = own_dir / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "other-user.sock").write_text("")
    args = _db_config(cfg_file, shared, _free_port(55460))
    try:
        res = CliRunner().invoke(cli, args + ["up"])
    finally:
        CliRunner().invoke(cli, args + ["down"])
    assert res.exit_code == 1
    assert res.output == (
        f"error: db.dir {shared} must be a dedicated folder: it holds other files, and "
        "`ivr db up` would make it the postgres user's, mode 0700; set db.dir to a new or "
        "empty folder, e.g. /var/lib/ivr-db\n")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_new_empty_and_own_folders_are_taken(own_dir: Path) -> None:
    """Without starting anything: which folders up may make its own."""
    def taken(base: Path) -> bool:
        try:
            PgCluster(base)._check_dedicated()
        except StoreError:
            return False
        return True
    assert taken(own_dir / "new")
    (own_dir / "empty").mkdir()
    assert taken(own_dir / "empty")
    early = own_dir / "early"  # a first up stopped before initdb ended
    (early / "run").mkdir(parents=True)
    for name in ("password", "pgpass", "postgres.log"):
        (early / name).write_text("x\n")
    assert taken(early)
    ours = own_dir / "ours"  # an earlier up's cluster, a file added beside it since
    (ours / "data").mkdir(parents=True)
    (ours / "data" / "postgresql.conf").write_text(f"port = 5432\n{INCLUDE}\n")
    (ours / "password").write_text("x\n")
    (ours / "backup.sql").write_text("")
    assert taken(ours)
    foreign = own_dir / "foreign"  # someone's data/, not a cluster of ours
    (foreign / "data").mkdir(parents=True)
    (foreign / "data" / "postgresql.conf").write_text("port = 5432\n")
    (foreign / "password").write_text("x\n")
    assert not taken(foreign)
    (early / "notes.txt").write_text("")
    assert not taken(early)


def test_a_lost_password_stops_up_before_it_starts(cfg_file: Path,
                                                   own_dir: Path) -> None:
    """up, down, the password file removed: one line naming what to do, nothing started,
    no new password made; a wrong password file: one line, the server stopped again; the
    right one back: up works."""
    base, port = own_dir / "pg", _free_port(55460)
    args, c = _db_config(cfg_file, base, port), PgCluster(base, port)
    run = CliRunner().invoke
    try:
        assert run(cli, args + ["up"]).exit_code == 0
        assert run(cli, args + ["down"]).output.strip() == "stopped"
        password = c.password_file.read_text()
        c.password_file.unlink()
        res = run(cli, args + ["up"])
        assert res.exit_code == 1
        assert res.output == (f"error: the password of the cluster in {base} is lost: "
                              f"restore {base}/password or remove {base}/data\n")
        assert not c.status().running and port_free(port)
        assert not c.password_file.exists()
        write_secret(c.password_file, "not-the-cluster-password\n")
        with pytest.raises(StoreError) as err:
            c.up()
        assert "\n" not in str(err.value)
        assert str(err.value).startswith(f"cannot connect to the private PostgreSQL on "
                                         f"127.0.0.1:{port} (")
        assert 'password authentication failed for user "ivr"' in str(err.value)
        assert str(err.value).endswith(f"): {base}/password does not hold the cluster's "
                                       f"password: restore it or remove {base}/data")
        assert not c.status().running and port_free(port)
        write_secret(c.password_file, password)
        assert run(cli, args + ["up"]).exit_code == 0
        assert c.status().running
    finally:
        run(cli, args + ["down"])


def _taken(base: Path) -> bool:
    try:
        PgCluster(base)._check_dedicated()
    except StoreError:
        return False
    return True


def _folder(base: Path, names: list[str], conf: str = INCLUDE) -> Path:
    base.mkdir()
    for name in names:
        if name in ("run", "lost+found", "data.tmp"):
            (base / name).mkdir()
        elif name == "data":  # a cluster: ours when its postgresql.conf has our include line
            (base / "data").mkdir()
            (base / "data" / "postgresql.conf").write_text(f"port = 5432\n{conf}\n")
        else:
            (base / name).write_text("x\n")
    return base


def test_what_a_failed_first_up_or_a_new_volume_holds_is_taken(own_dir: Path) -> None:
    """run/ alone (up stopped at 'the postgres user cannot reach'), a new volume's
    lost+found, with or without the password files; anything else, a data/ not ours, or a
    data.tmp that no password files came before, is refused."""
    taken = [["run"], ["lost+found"], ["run", "lost+found"], ["run", "postgres.log"],
             ["run", "password", "pgpass", "lost+found"],
             ["run", "password", "pgpass", "data.tmp", "lost+found"]]
    for i, names in enumerate(taken):
        assert _taken(_folder(own_dir / f"t{i}", names)), names
    assert _taken(_folder(own_dir / "ours", ["lost+found", "run", "data", "password"]))
    refused = [["lost+found", "notes.txt"], ["run", "data.tmp"], ["data.tmp"],
               ["run", "lost+found", "backup"]]
    for i, names in enumerate(refused):
        assert not _taken(_folder(own_dir / f"r{i}", names)), names
    for i, names in enumerate((["run", "data"], ["lost+found", "data", "password"])):
        assert not _taken(_folder(own_dir / f"f{i}", names, conf="")), names


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user only runs the server as root")
def test_up_again_after_the_postgres_user_could_not_reach_the_folder(own_dir: Path) -> None:
    """A new volume (lost+found) under a folder the postgres user cannot traverse: up fails
    leaving run/ behind; once the parent is opened up, up takes the folder and starts."""
    parent = own_dir / "mnt"
    parent.mkdir(mode=0o700)
    parent.chmod(0o700)
    c = PgCluster(_folder(parent / "vol", ["lost+found"]), _free_port(55460), fast=True)
    try:
        with pytest.raises(StoreError, match="the postgres user cannot reach"):
            c.up()
        assert sorted(p.name for p in c.base.iterdir()) == ["lost+found", "run"]
        assert not c.status().running
        parent.chmod(0o711)
        st = c.up()
        assert st.running and st.port == c.port
        assert (c.base / "lost+found").is_dir()
    finally:
        c.down()


def test_a_start_pg_ctl_gave_up_on_leaves_nothing_running(own_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_ctl -w gives up waiting (a short --timeout, a slow machine) while the server goes on
    starting: up said "did not start" and left it running on the port. It stops it now."""
    c = PgCluster(own_dir / "slow", _free_port(55470), fast=True)
    real = PgCluster._start

    def gave_up(self: PgCluster, timeout_s: float) -> None:
        real(self, timeout_s)  # started, but told as a failure
        raise StoreError("PostgreSQL did not start (no output): see the log")
    monkeypatch.setattr(PgCluster, "_start", gave_up)
    try:
        with pytest.raises(StoreError, match="did not start"):
            c.up()
        assert not c.status().running
    finally:
        c.down()


@pytest.mark.parametrize("args", [["db", "up", "--timeout", "-1"], ["db", "up", "--timeout", "0"],
                                  ["pbx", "up", "--timeout", "nan"], ["pbx", "up", "--timeout", "inf"], ["demo", "--nodes", "0"],
                                  ["demo", "--controllers", "9"]])
def test_out_of_range_options_are_refused_before_anything_starts(cfg_file: Path,
                                                                 args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), *args])
    assert result.exit_code == 2 and "is not in the range" in result.output, result.output
