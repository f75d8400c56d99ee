"""`ivr web`: the campaign console (ivr/web/) served by uvicorn on web.host:web.port
(127.0.0.1:8080 by default), alone or beside `ivr run` and `ivr serve`."""
from __future__ import annotations

import errno
import ipaddress
import signal
import socket
import sys

import click

from ivr.cli import Ctx, err_console, pass_ctx
from ivr.errors import IvrError


def bind_console(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line, not uvicorn's log
    after a 'console on ...' line that was not true."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise IvrError(f"port {port} is already in use: stop the other console or pass "
                           "--port / set web.port") from None
        reason = exc.strerror or exc.__class__.__name__
        raise IvrError(f"cannot listen on {host}:{port} ({reason}): pass --host / set web.host "
                       "to an address of this machine (default 127.0.0.1)") from None
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@click.command("web")
@click.option("--host", default=None, help="Override web.host (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Override web.port (default 8080).")
@pass_ctx
def web(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Serve the web console until Ctrl-C. Put a TLS reverse proxy in front (README)."""
    import uvicorn

    from ivr.app import open_store
    from ivr.web import create_app
    cfg = ctx.cfg
    host, port = host or cfg.web.host, port or cfg.web.port
    sock = bind_console(host, port)  # before the store: nothing opened for a port in use
    first = [ctx.store(serving=True)]  # fails now, in one line, if the store cannot be opened

    def stores():  # type: ignore[no-untyped-def]
        return first.pop() if first else open_store(cfg)  # the first thread reuses it
    app = create_app(cfg, stores, freeze_gc=True)  # the console alone in its process
    if not is_loopback(host):
        err_console.print(f"warning: the console on {host} is served in plain HTTP beyond this "
                          "machine: put it behind a TLS reverse proxy (README, \"The web "
                          "console\")", highlight=False, markup=False)
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"console on http://{shown}:{port}/ (Ctrl-C stops)", highlight=False,
                      markup=False)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=True,
                                           forwarded_allow_ips="127.0.0.1"))
    # uvicorn stops gracefully on INT and TERM only: a HUP (a dropped ssh session) killed it
    signal.signal(signal.SIGHUP, server.handle_exit)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if not server.started:  # uvicorn logged why (the app's start-up failed)
        sys.exit(3)
