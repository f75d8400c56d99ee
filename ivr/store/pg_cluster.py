"""A private PostgreSQL for the sandbox and the tests: Debian's binaries, a data directory of its own.

`ivr db up` runs initdb and pg_ctl from /usr/lib/postgresql/<version>/bin (the newest installed)
on a data directory under the sandbox, never on a `pg_lsclusters` cluster, which it neither
reads nor starts. As root the server runs as the `postgres` user (PostgreSQL refuses root); it
listens on 127.0.0.1 only and keeps its unix socket in its own folder. Its superuser `ivr` logs
in with scram-sha-256 and a generated password kept in a 0600 file (`password`, and `pgpass`
for libpq's PGPASSFILE); the password is never printed, and never part of a URL. Its folder
(db.dir) becomes 0700 and the server user's, so only a new, empty or already-ours one is taken.
"""
from __future__ import annotations

import errno
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.errors import StoreError
from ivr.secret_files import read_or_create, write_secret
from ivr.store.pg_postmaster import Claim, claim

PG_ROOT = Path("/usr/lib/postgresql")
HOST = "127.0.0.1"  # loopback only: the sandbox's database is never reachable from outside
USER = "ivr"
DATABASE = "ivr"
DEFAULT_PORT = 55432
OS_USER = "postgres"  # the server's owner when we run as root
CONF = "ivr.conf"     # our settings, included by the cluster's postgresql.conf
INCLUDE = f"include_if_exists = '{CONF}'"  # the line initdb's postgresql.conf gets from us
# Everything `ivr db up` puts in its folder (db.dir): a folder holding anything else is not ours.
OURS = frozenset({"data", "data.tmp", "run", "postgres.log", "password", "pgpass"})
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def bindir() -> Path:
    """The bin folder of the newest PostgreSQL server installed from Debian's package."""
    found = [p.parent for p in PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not found:
        raise StoreError(f"PostgreSQL server binaries not found under {PG_ROOT}: "
                         "apt-get install postgresql (scripts/setup.sh installs it)")
    return max(found, key=lambda p: int(p.parent.name))


def port_free(port: int, host: str = HOST) -> bool:
    """Whether `port` can be bound on `host` now (something listening there says no)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@dataclass
class DbStatus:
    running: bool
    pid: int | None
    port: int
    url: str  # never with the password
    dir: str

    def as_dict(self) -> dict[str, Any]:
        return {"running": self.running, "pid": self.pid, "port": self.port, "url": self.url,
                "dir": self.dir}


class PgCluster:
    """One private cluster in `base`: data/, run/ (socket), postgres.log, password, pgpass.
    `fast`: no fsync (test clusters only: a crash may lose their data, which is thrown away)."""

    def __init__(self, base: Path, port: int = DEFAULT_PORT, *, fast: bool = False,
                 max_connections: int = 100) -> None:
        self.base = Path(base).absolute()
        self.port = port
        self.fast = fast
        self.max_connections = max_connections
        self.data = self.base / "data"
        self.run_dir = self.base / "run"
        self.log = self.base / "postgres.log"
        self.password_file = self.base / "password"
        self.pgpass_file = self.base / "pgpass"

    # -- what clients use ---------------------------------------------------------------------
    def url_for(self, dbname: str = DATABASE) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def password(self) -> str:
        self._check_password_kept()
        if not self.password_file.exists():
            raise StoreError(f"no private PostgreSQL in {self.base}: run `ivr db up` first")
        return self.password_file.read_text().strip()

    # -- up / down / status -------------------------------------------------------------------
    def status(self) -> DbStatus:
        pid, port = self._postmaster()
        return DbStatus(pid is not None, pid, port or self.port,
                        self.url_for() if port is None else
                        f"postgresql://{USER}@{HOST}:{port}/{DATABASE}", str(self.base))

    def up(self, timeout_s: float = 60.0) -> DbStatus:
        """Start the cluster (initialised on first use) and create the database `ivr`.
        Idempotent: a running cluster on the same port is left as it is."""
        self._check_password_kept()  # a new password would not open the existing cluster
        st = self.status()
        if st.running and st.port != self.port:
            raise StoreError(f"the private PostgreSQL in {self.base} runs on port {st.port}, "
                             f"not db.port {self.port}: `ivr db down` first, then `ivr db up`")
        if not st.running:
            if not port_free(self.port):
                raise StoreError(f"port {self.port} is already in use: stop the service "
                                 "listening there or set db.port in config.yaml")
            self._prepare()
            self._write_conf()
            try:
                self._start(timeout_s)
            except StoreError:  # pg_ctl gave up waiting: the server may be up all the same
                self._stop_quietly()
                raise
        try:
            self.create_database(DATABASE, exist_ok=True)
        except StoreError:
            if not st.running:  # a failed up leaves nothing running that it started
                self._stop_quietly()
            raise
        return self.status()

    def down(self, timeout_s: float = 60.0) -> bool:
        """Stop this cluster only (fast shutdown: sessions are ended, data is checkpointed).
        False when it was not running."""
        if not self.status().running:
            return False
        proc = self._as_owner([str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                               "-w", "-t", str(int(timeout_s)), "stop"])
        if proc.returncode != 0 and self.status().running:
            raise StoreError(f"pg_ctl stop failed ({_last_line(proc.stderr)}): see {self.log}")
        return True

    def _stop_quietly(self) -> None:
        try:
            self.down()
        except StoreError:
            pass  # the error that made us stop is the one to report

    # -- databases (the tests' fresh database per test) ---------------------------------------
    @contextmanager
    def admin(self) -> Iterator[Any]:
        """An autocommit session on the `postgres` database as the superuser."""
        import psycopg
        try:
            conn = psycopg.connect(host=HOST, port=self.port, user=USER,
                                   password=self.password(), dbname="postgres",
                                   autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:  # one line, not psycopg's traceback
            why = _last_line(str(exc))
            fix = (f"{self.password_file} does not hold the cluster's password: restore it "
                   f"or remove {self.data}" if "password authentication failed" in why
                   else f"see {self.log}")
            raise StoreError(f"cannot connect to the private PostgreSQL on {HOST}:{self.port} "
                             f"({why}): {fix}") from None
        with conn:
            yield conn

    def create_database(self, name: str, *, template: str | None = None,
                        exist_ok: bool = False) -> None:
        """Through createdb (a database name cannot be a bound parameter, and no statement
        is ever assembled from strings here)."""
        _check_name(name)
        if exist_ok:
            with self.admin() as conn:
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone():
                    return
        extra = []
        if template is not None:
            _check_name(template)
            extra = ["-T", template]
        self._client("createdb", *extra, name)

    def drop_database(self, name: str) -> None:
        """Drop it, ending any session still open on it (a test's leaked pool included)."""
        _check_name(name)
        self._client("dropdb", "--if-exists", "--force", name)

    def _client(self, program: str, *args: str) -> None:
        """One of PostgreSQL's client programs, as the cluster's superuser over loopback,
        the password from the pgpass file (never on a command line)."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PGPASSFILE": str(self.pgpass_file),
               "PGCONNECT_TIMEOUT": "10"}
        proc = subprocess.run([str(bindir() / program), "-h", HOST, "-p", str(self.port),
                               "-U", USER, "-w", *args], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StoreError(f"{program} {' '.join(args)} failed: {_last_line(proc.stderr)}")

    def setting(self, name: str) -> str:
        """A server setting as the running server sees it (e.g. listen_addresses)."""
        with self.admin() as conn:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        return str(row[0])

    # -- internals ----------------------------------------------------------------------------
    def _postmaster(self) -> tuple[int | None, int | None]:
        """(pid, port) of the server running on our data directory, from postmaster.pid:
        the file must name our data directory and its pid be our server (pg_postmaster)."""
        found = self._pid_file()
        if found is None or os.path.realpath(found[1]) != os.path.realpath(self.data):
            return None, None
        pid, _, port = found
        return (pid, port) if claim(pid, self.data) is Claim.OURS else (None, None)

    def _pid_file(self) -> tuple[int, str, int] | None:
        """postmaster.pid's pid, data directory and port (None: no such file, or torn)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), lines[1], int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def _owner(self) -> tuple[int, int] | None:
        """uid/gid the server runs as: `postgres` when we are root, else ourselves (None)."""
        if os.geteuid() != 0:
            return None
        try:
            pw = pwd.getpwnam(OS_USER)
        except KeyError:
            raise StoreError(f"user {OS_USER} not found: apt-get install postgresql") from None
        return pw.pw_uid, pw.pw_gid

    def _as_owner(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", OS_USER, "--"] if self._owner() else []
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        return subprocess.run(prefix + cmd, cwd=self.base, env=env, capture_output=True,
                              text=True)

    def _prepare(self) -> None:
        """Folders owned by the server's user; initdb once (into a temporary folder, renamed
        when complete, so a half-made cluster is never taken for a good one)."""
        owner = self._owner()
        self._check_dedicated()
        self.base.mkdir(parents=True, exist_ok=True)
        for d in (self.base, self.run_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            d.chmod(0o700)  # the password files live here
            if owner:
                os.chown(d, *owner)
        if owner and self._as_owner(["test", "-w", str(self.base)]).returncode != 0:
            raise StoreError(f"the {OS_USER} user cannot reach {self.base}: set db.dir to a "
                             "folder every user may traverse (e.g. /var/lib/ivr-db)")
        password = read_or_create(self.password_file, lambda: secrets.token_urlsafe(24))
        # libpq's password file (PGPASSFILE): any port, any database of this cluster's user.
        write_secret(self.pgpass_file, f"{HOST}:*:*:{USER}:{password}\n")
        if (self.data / "PG_VERSION").exists():
            return
        self._initdb(password, owner)

    def _holds_cluster(self) -> bool:
        """Whether data/ is a cluster `ivr db up` made (initdb's conf with our include line)."""
        try:
            return INCLUDE in (self.data / "postgresql.conf").read_text()
        except (OSError, UnicodeDecodeError):
            return False

    def _check_password_kept(self) -> None:
        """Our cluster without its password file: a new password would not match the one
        initdb set, so nothing could log in; say so before starting anything."""
        if not self.password_file.exists() and self._holds_cluster():
            raise StoreError(f"the password of the cluster in {self.base} is lost: restore "
                             f"{self.password_file} or remove {self.data}")

    def _check_dedicated(self) -> None:
        """Take only a folder that is new, empty, or ours (our cluster, or what a first up
        that stopped early left, e.g. run/ alone): up makes it 0700 and the postgres user's,
        which would lock every other user out of a shared one (/srv, /tmp)."""
        try:
            names = {p.name for p in self.base.iterdir()}
        except FileNotFoundError:
            return  # made by us below
        except OSError as exc:
            raise StoreError(f"db.dir {self.base} cannot be read ({exc.strerror}): set db.dir "
                             "to a folder of its own, e.g. /var/lib/ivr-db") from None
        if self._holds_cluster() and self.password_file.exists():
            return
        # Only what up makes (a new volume's lost+found beside): its data/ must be our
        # cluster, and data.tmp (removed before initdb) comes only after the password files.
        if (names <= OURS | {"lost+found"} and "data" not in names
                and ("data.tmp" not in names or {"password", "pgpass"} <= names)):
            return
        raise StoreError(f"db.dir {self.base} must be a dedicated folder: it holds other "
                         f"files, and `ivr db up` would make it the {OS_USER} user's, mode "
                         "0700; set db.dir to a new or empty folder, e.g. /var/lib/ivr-db")

    def _initdb(self, password: str, owner: tuple[int, int] | None) -> None:
        tmp = self.base / "data.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pwfile = self.run_dir / ".initdb-password"  # readable by the server's user, then gone
        write_secret(pwfile, password + "\n", owner=owner)
        try:
            proc = self._as_owner([str(bindir() / "initdb"), "-D", str(tmp), "-U", USER,
                                   "-A", "scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                   "--locale=C.UTF-8", "--no-instructions", "--no-sync"])
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"initdb failed ({_last_line(proc.stderr)}): check that "
                             f"{self.base} is writable by the {OS_USER} user")
        with (tmp / "postgresql.conf").open("a") as fh:
            fh.write(f"\n{INCLUDE}\n")
        tmp.rename(self.data)

    def _write_conf(self) -> None:
        """Our settings, rewritten on every up so db.port and the folders always hold."""
        socket_dir = str(self.run_dir).replace("'", "''")
        lines = [f"listen_addresses = '{HOST}'", f"port = {self.port}",
                 f"unix_socket_directories = '{socket_dir}'", "unix_socket_permissions = 0700",
                 f"max_connections = {self.max_connections}", "password_encryption = scram-sha-256"]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = self.data / CONF
        conf.write_text("\n".join(lines) + "\n")
        owner = self._owner()
        if owner:
            os.chown(conf, *owner)

    def _drop_stale_pid_file(self) -> None:
        """A postmaster.pid naming a live process that is not our server: postgres would
        take it for a running postmaster and refuse to start. Removed only when that process
        is positively another (pg_postmaster.Claim.OTHER): a dead pid's file postgres clears
        itself, and one whose process cannot be seen into may be our live server's, whose
        file gone would leave it running where no `ivr db` command could see or stop it."""
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            if pid <= 0:
                return  # a single-user backend's: never ours to clear
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return
        seen = claim(pid, self.data)
        if seen is Claim.OTHER:
            pid_file.unlink(missing_ok=True)
        elif seen is not Claim.GONE:
            raise StoreError(f"cannot tell whether process {pid}, named by {pid_file}, is this "
                             f"cluster's server: if `ps -o args -p {pid}` does not show "
                             f"-D {self.data}, remove {pid_file}, then `ivr db up` again")

    def _start(self, timeout_s: float) -> None:
        self._drop_stale_pid_file()
        seen = self.log.stat().st_size if self.log.exists() else 0  # this start's lines only
        proc = self._as_owner([str(bindir() / "pg_ctl"), "-D", str(self.data), "-l",
                               str(self.log), "-w", "-t", str(int(timeout_s)), "start"])
        if proc.returncode != 0 or not self.status().running:
            text = log_since(self.log, seen) if self.log.exists() else proc.stderr
            why = _last_line(text)
            # The log's last line is then "database system is shut down": look at them all.
            if "Address already in use" in text:
                raise StoreError(f"port {self.port} is already in use: stop the service "
                                 "listening there or set db.port in config.yaml")
            raise StoreError(f"PostgreSQL did not start ({why}): see {self.log}")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"internal: database name {name!r} is not a plain lower-case name")


def log_since(log: Path, offset: int) -> str:
    """The log's text from byte `offset` (its size before this start): read as bytes, since
    a byte offset into decoded text would skip or repeat lines after non-ASCII ones (a
    localized server's messages); all of it if the log was truncated or rotated since."""
    with log.open("rb") as fh:
        if offset > os.fstat(fh.fileno()).st_size:
            offset = 0
        fh.seek(offset)
        return fh.read().decode("utf-8", errors="replace")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
