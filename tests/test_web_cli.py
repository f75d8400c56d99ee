"""`ivr web` really serves: the console comes up on web.host:web.port (loopback by default),
its login page and API answer over HTTP, and it warns when IVR_WEB_SECRET is unset."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

import ports
from ivr import config as config_mod


def _free_port() -> int:
    return ports.free_port()  # below the ephemeral range (tests/ports.py)


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


def _invoke_web(cfg_file: Path, *args: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from ivr.cli import cli
    return CliRunner().invoke(cli, ["--config", str(cfg_file), "web", *args])


def test_a_port_in_use_is_one_line_and_no_console_line(cfg_file: Path) -> None:
    """uvicorn printed 'console on ...' then its own Errno 98 log line (rc 3)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _invoke_web(cfg_file, "--port", str(port))
    assert result.exit_code == 1, result.output
    assert result.output == (f"error: port {port} is already in use: stop the other console "
                             "or pass --port / set web.port\n")


def test_a_host_beyond_loopback_warns_of_plain_http(cfg_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def started(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        assert sockets[0].getsockname()[0] in ("0.0.0.0", "127.0.0.1")
        self.started = True  # served and stopped at once
    monkeypatch.setattr(uvicorn.Server, "run", started)
    warning = "is served in plain HTTP beyond this machine: put it behind a TLS reverse proxy"
    port = str(_free_port())
    result = _invoke_web(cfg_file, "--port", port, "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert any(line.startswith(f"warning: the console on 0.0.0.0 {warning} (README")
               for line in result.output.splitlines()), result.output
    assert f"console on http://0.0.0.0:{port}/" in result.output
    data = yaml.safe_load(cfg_file.read_text())
    data["web"] = {"host": "0.0.0.0", "port": int(port)}  # from the config too
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert warning in _invoke_web(cfg_file).output
    result = _invoke_web(cfg_file, "--host", "127.0.0.1")
    assert result.exit_code == 0 and warning not in result.output, result.output


def test_ivr_web_stops_cleanly_on_sighup(cfg_file: Path) -> None:
    """A dropped ssh session sends HUP: uvicorn handles INT and TERM only, so it died (129)."""
    port = _free_port()
    data = yaml.safe_load(cfg_file.read_text())
    data["web"] = {"port": port}
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    proc = subprocess.Popen([sys.executable, "-c", "from ivr.cli import main; main()", "--config",
                             str(cfg_file), "web"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "ivr web did not come up in 60 s"
                time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
