"""`ivr demo --web` (issue 15 item 8), the parts that need no PBX: a taken web.port fails before
the demo starts, and the one-time admin is created through the users code (argon2id hash, the
password itself kept nowhere). The whole command is tested on the sandbox in
tests/integration/test_web_browser.py."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.console import Console

from conftest import CALLER_ID, make_config
from ivr import demo
from ivr.app import open_store
from ivr.errors import IvrError
from ivr.web_users import verify_password


def test_a_taken_web_port_fails_before_the_demo(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_demo", lambda *a: pytest.fail("the demo ran"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = make_config(tmp_path, campaign={"name": "d", "caller_id": CALLER_ID},
                          web={"port": port})
        with pytest.raises(IvrError) as err:
            demo.run_demo(cfg, Console(), web=True)
    assert str(err.value).startswith(f"web.port: 127.0.0.1:{port} is taken")
    assert "\n" not in str(err.value)


def test_the_one_time_admin(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    cfg = make_config(tmp_path, campaign={"name": "d", "caller_id": CALLER_ID},
                      store={"path": str(db)})
    password = demo.demo_admin(cfg)
    again = demo.demo_admin(make_config(tmp_path, campaign={"name": "d", "caller_id": CALLER_ID},
                                        store={"path": str(tmp_path / "other.db")}))
    assert len(password) >= 12 and password != again  # generated, each time anew
    row = open_store(cfg).user_by_name(demo.DEMO_ADMIN)
    assert row["role"] == "admin" and row["password_hash"].startswith("$argon2id$")
    assert verify_password(row["password_hash"], password)
    for path in tmp_path.iterdir():
        assert password.encode() not in path.read_bytes(), path


def test_the_console_url_is_printed_once_it_answers(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator is told the URL only when a connection to it succeeds (printed before
    the bind, after the console's warm-up, it was refused for a while)."""
    import threading
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = make_config(tmp_path, campaign={"name": "d", "caller_id": CALLER_ID},
                      store={"path": str(tmp_path / "d.db")}, web={"port": port})
    answered: list[bool] = []

    class Watching(Console):
        def print(self, *objects, **kwargs) -> None:  # type: ignore[no-untyped-def,override]
            if str(objects[0]).startswith("console: "):
                with socket.socket() as s:
                    answered.append(s.connect_ex(("127.0.0.1", port)) == 0)
    servers: list[object] = []
    import uvicorn
    real_init = uvicorn.Server.__init__

    def keep(self, *a, **k) -> None:  # type: ignore[no-untyped-def]
        real_init(self, *a, **k)
        servers.append(self)
    monkeypatch.setattr(uvicorn.Server, "__init__", keep)
    t = threading.Thread(target=demo.serve_console, args=(cfg, Watching()), daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not answered and time.monotonic() < deadline:
        time.sleep(0.05)
    for server in servers:
        server.should_exit = True  # type: ignore[attr-defined]
    t.join(30)
    assert answered == [True]
