"""The private PostgreSQL (ivr/store/pg_cluster.py, `ivr db`): a real cluster from Debian's
binaries on a folder of its own, loopback only, scram password never shown, system clusters
untouched; and the session fixtures `pg_cluster` / `pg_url` that the store tests use."""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import _pg_unavailable
from ivr.cli import cli
from ivr.errors import StoreError
from ivr.store.pg_cluster import DATABASE, PgCluster, port_free

if _pg_unavailable() and not os.environ.get("CI"):
    pytest.skip(f"no PostgreSQL here: {_pg_unavailable()}", allow_module_level=True)


def _free_port(start: int) -> int:
    """A free port among 500 from `start`, picked at random: other test sessions on this
    machine may be starting their own clusters at the same moment."""
    ports = list(range(start, start + 500))
    random.shuffle(ports)
    return next(p for p in ports if port_free(p))


def _system_clusters() -> str:
    """pg_lsclusters' view of the system clusters (main's status included)."""
    return subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True,
                          text=True).stdout


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


@pytest.fixture
def own_dir() -> Iterator[Path]:
    """Under /tmp (not tmp_path, which the postgres user cannot traverse)."""
    d = Path(tempfile.mkdtemp(prefix="ivr-pg-unit-"))
    d.chmod(0o711)  # traversable by the postgres user; the cluster's own folder is 0700
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cluster(own_dir: Path) -> Iterator[PgCluster]:
    c = PgCluster(own_dir / "pg", _free_port(55460), fast=True)
    try:
        yield c
    finally:
        c.down()


def test_up_status_down_idempotent_loopback_only(cluster: PgCluster) -> None:
    before = _system_clusters()
    assert not cluster.status().running
    st = cluster.up()
    assert st.running and st.pid and st.port == cluster.port
    assert st.url == f"postgresql://ivr@127.0.0.1:{cluster.port}/ivr"
    assert cluster.up().pid == st.pid  # idempotent: the same server, not a second one
    assert cluster.setting("listen_addresses") == "127.0.0.1"
    assert cluster.setting("unix_socket_directories") == str(cluster.run_dir)
    assert _listeners(cluster.port) == {"0100007F"}  # 127.0.0.1 only, no IPv6, no wildcard
    assert cluster.setting("data_directory") == str(cluster.data)
    with cluster.admin() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        method = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules "
                              "WHERE type = 'host'").fetchall()
    assert DATABASE in names
    assert method == [("scram-sha-256",)]
    for secret in (cluster.password_file, cluster.pgpass_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert cluster.password() not in json.dumps(st.as_dict())
    assert cluster.down() is True
    assert not cluster.status().running and not _listeners(cluster.port)
    assert cluster.down() is False
    assert _system_clusters() == before  # the system's `main` cluster untouched


def test_wrong_password_is_refused(cluster: PgCluster) -> None:
    import psycopg
    cluster.up()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=cluster.port, user="ivr", password="wrong",
                        dbname="ivr", connect_timeout=5)


def test_port_in_use_is_one_line_naming_db_port(own_dir: Path) -> None:
    port = _free_port(55460)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", port))
        taken.listen()
        c = PgCluster(own_dir / "pg", port)
        with pytest.raises(StoreError) as err:
            c.up()
    assert str(err.value) == (f"port {port} is already in use: stop the service listening "
                              "there or set db.port in config.yaml")
    assert not (own_dir / "pg" / "data").exists()  # refused before anything was made


def test_a_port_taken_between_the_check_and_the_start_is_named(
        cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bound by another process after up() found it free (two test sessions starting side by
    side): the same one-line error (PostgreSQL's log ends on "shut down", not on the cause),
    which conftest's cluster start answers by trying the next port."""
    monkeypatch.setattr("ivr.store.pg_cluster.port_free", lambda port, host="": True)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", cluster.port))
        taken.listen()
        with pytest.raises(StoreError) as err:
            cluster.up(timeout_s=20)
    assert str(err.value) == (f"port {cluster.port} is already in use: stop the service "
                              "listening there or set db.port in config.yaml")


def test_cli_up_status_down(cfg_file: Path, own_dir: Path) -> None:
    port = _free_port(55460)
    data = yaml.safe_load(cfg_file.read_text())
    data["db"] = {"port": port, "dir": str(own_dir / "pg")}
    cfg_file.write_text(yaml.safe_dump(data))
    run = CliRunner().invoke
    args = ["--config", str(cfg_file), "db"]
    try:
        up = run(cli, args + ["up"])
        assert up.exit_code == 0, up.output
        url = f"postgresql://ivr@127.0.0.1:{port}/ivr"
        assert f"store.url: {url}" in up.output
        password = (own_dir / "pg" / "password").read_text().strip()
        assert len(password) >= 24 and password not in up.output
        st = json.loads(run(cli, args + ["status", "--json"]).output)
        assert st["running"] is True and st["port"] == port and st["url"] == url
        assert isinstance(st["pid"], int) and password not in json.dumps(st)
    finally:
        down = run(cli, args + ["down"])
    assert down.exit_code == 0 and down.output.strip() == "stopped"
    st = json.loads(run(cli, args + ["status", "--json"]).output)
    assert st["running"] is False and st["pid"] is None


def test_cli_port_in_use_exits_with_one_line(cfg_file: Path, own_dir: Path) -> None:
    port = _free_port(55460)
    data = yaml.safe_load(cfg_file.read_text())
    data["db"] = {"port": port, "dir": str(own_dir / "pg")}
    cfg_file.write_text(yaml.safe_dump(data))
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        res = CliRunner().invoke(cli, ["--config", str(cfg_file), "db", "up"])
    assert res.exit_code == 1
    assert res.output == (f"error: port {port} is already in use: stop the service listening "
                          "there or set db.port in config.yaml\n")


# -- the session fixtures ---------------------------------------------------------------------
def test_pg_url_is_a_fresh_empty_database(pg_url: str) -> None:
    import psycopg
    assert "@" in pg_url and ":" not in pg_url.split("//")[1].split("@")[0]  # no password
    with psycopg.connect(pg_url) as conn:  # PGPASSFILE set by the fixture
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                              ).fetchone()
        conn.execute("CREATE TABLE left_behind (x int)")
    assert tables == (0,)


def test_pg_url_is_dropped_after_its_test(pg_url: str, pg_cluster: PgCluster,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_url's own code (conftest.fresh_database) run here, with a session left open on its
    database as a leaked pool leaves one: on exit the database is gone. Self-contained: it
    reads nothing another test left."""
    import psycopg
    from conftest import fresh_database

    def exists(name: str) -> bool:
        with pg_cluster.admin() as conn:
            return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                                (name,)).fetchone() == (1,)
    with fresh_database(pg_cluster, monkeypatch) as url:
        name = url.rsplit("/", 1)[1]
        assert exists(name) and name != pg_url.rsplit("/", 1)[1]
        leaked = psycopg.connect(url)  # never closed before the drop
        leaked.execute("CREATE TABLE left_behind (x int)")
        leaked.commit()
    assert not exists(name)
    leaked.close()


def test_session_cluster_is_private_and_loopback(pg_cluster: PgCluster) -> None:
    assert pg_cluster.status().running
    assert pg_cluster.setting("listen_addresses") == "127.0.0.1"
    assert pg_cluster.setting("fsync") == "off"  # a throwaway test cluster
    assert str(pg_cluster.base).startswith(tempfile.gettempdir())


def test_database_names_are_checked(pg_cluster: PgCluster) -> None:
    with pytest.raises(ValueError):
        pg_cluster.create_database('x"; DROP DATABASE ivr; --')


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as postgres only under root")
def test_unreachable_folder_is_one_line_naming_db_dir(own_dir: Path) -> None:
    own_dir.chmod(0o700)  # like pytest's tmp_path: the postgres user cannot get in
    with pytest.raises(StoreError) as err:
        PgCluster(own_dir / "pg", _free_port(55460)).up()
    assert str(err.value) == (f"the postgres user cannot reach {own_dir / 'pg'}: set db.dir "
                              "to a folder every user may traverse (e.g. /var/lib/ivr-db)")
