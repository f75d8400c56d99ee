"""`ivr web`: the campaign console (ivr/web/) served by uvicorn on web.host:web.port
(127.0.0.1:8080 by default), alone or beside `ivr run` and `ivr serve`."""
from __future__ import annotations

import click

from ivr.cli import Ctx, err_console, pass_ctx


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
    first = [ctx.store(serving=True)]  # fails now, in one line, if the store cannot be opened

    def stores():  # type: ignore[no-untyped-def]
        return first.pop() if first else open_store(cfg)  # the first thread reuses it
    app = create_app(cfg, stores, freeze_gc=True)  # the console alone in its process
    host, port = host or cfg.web.host, port or cfg.web.port
    err_console.print(f"console on http://{host}:{port}/ (Ctrl-C stops)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True,
                forwarded_allow_ips="127.0.0.1")
