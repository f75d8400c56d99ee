"""`ivr db up|down|status`: the sandbox's private PostgreSQL (ivr/store/pg_cluster.py).

A group of its own, registered on the main `ivr` group by ivr/cli.py; errors are IvrErrors,
which the main group turns into one line.
"""
from __future__ import annotations

import json

import click

from ivr.cli_guard import Seconds
from ivr.store.factory import cluster_for


@click.group("db")
def db() -> None:
    """The sandbox's private PostgreSQL (Debian's postgresql package), on loopback."""


@db.command("up")
@click.option("--timeout", default=60.0, show_default=True, type=Seconds(),
              help="Seconds to wait for start.")
@click.pass_obj
def db_up(obj, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Start it (initialised on first use) and create the database `ivr`. Idempotent."""
    cluster = cluster_for(obj.cfg)
    st = cluster.up(timeout)
    click.echo(f"PostgreSQL running on 127.0.0.1:{st.port} (pid {st.pid}), data in {st.dir}")
    click.echo(f"store.url: {st.url}")
    # The password itself is never printed: point libpq (or IVR_STORE_PASSWORD) at the file.
    click.echo(f"password: export PGPASSFILE={cluster.pgpass_file}  "
               f"(or IVR_STORE_PASSWORD=\"$(cat {cluster.password_file})\")")


@db.command("down")
@click.pass_obj
def db_down(obj) -> None:  # type: ignore[no-untyped-def]
    """Stop only this private cluster (fast shutdown)."""
    stopped = cluster_for(obj.cfg).down()
    click.echo("stopped" if stopped else "not running")


@db.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def db_status(obj, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Running or not, pid, port and the store.url to use (never the password)."""
    st = cluster_for(obj.cfg).status()
    if as_json:
        click.echo(json.dumps(st.as_dict()))
        return
    state = f"running (pid {st.pid})" if st.running else "stopped"
    click.echo(f"{state} on 127.0.0.1:{st.port}; store.url: {st.url}; data in {st.dir}")
