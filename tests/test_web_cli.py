"""`ivr web` really serves: the console comes up on web.host:web.port (loopback by default),
its login page and API answer over HTTP, and it warns when IVR_WEB_SECRET is unset."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from ivr import config as config_mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_web_defaults_to_loopback_8080() -> None:
    web = config_mod.from_dict({}).web
    assert (web.host, web.port) == ("127.0.0.1", 8080)


def test_ivr_web_serves_the_console(cfg_file: Path) -> None:
    port = _free_port()
    data = yaml.safe_load(cfg_file.read_text())
    data["web"] = {"port": port}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if k != "IVR_WEB_SECRET"}
    proc = subprocess.Popen([sys.executable, "-c", "from ivr.cli import main; main()", "--config",
                             str(cfg_file), "web"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "ivr web did not come up in 60 s"
                time.sleep(0.2)
        assert r.status_code == 200 and 'id="login-form"' in r.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/campaigns").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/openapi.json").status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"console on http://127.0.0.1:{port}/" in err
    assert "IVR_WEB_SECRET is not set" in err
