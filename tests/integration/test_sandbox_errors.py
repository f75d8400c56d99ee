"""Issue 2: the sandbox's failure modes each give one line saying what to do."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from ivr import config
from ivr.config import Config
from ivr.errors import SandboxError
from ivr.telephony.sandbox import Sandbox


def run_ivr(cfg_file: Path, *args: str, env: dict | None = None,
            ) -> subprocess.CompletedProcess:
    cmd = [shutil.which("ivr") or "ivr", "--config", str(cfg_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=env or dict(os.environ))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_port_5038_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"pbx": {"port": port, "sandbox_dir": str(tmp_path)}}))
        line = one_line_error(run_ivr(cfg, "pbx", "up"))
    assert f"port {port} is already in use" in line and "pbx.port" in line


def test_missing_mmdebstrap_says_how_to_install_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"pbx": {"sandbox_dir": str(tmp_path)}}))
    env = dict(os.environ, IVR_SANDBOX_CACHE=str(tmp_path / "cache"),
               PATH=str(Path(shutil.which("ivr")).parent) + ":/usr/bin:/bin")
    bindir = tmp_path / "bin"  # a PATH without mmdebstrap but with python and chroot
    bindir.mkdir()
    for tool in ("python3", "chroot", "ffmpeg", "ffprobe"):
        (bindir / tool).symlink_to(shutil.which(tool))
    env["PATH"] = f"{Path(shutil.which('ivr')).parent}:{bindir}"
    line = one_line_error(run_ivr(cfg, "pbx", "up", env=env))
    assert "mmdebstrap not found" in line and "apt-get install" in line


def test_not_root_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine only has root with a usable Python; the check itself is what is tested.
    cfg = config.from_dict({"pbx": {"sandbox_dir": str(tmp_path)}}, tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root"):
        Sandbox(cfg).up()


def test_status_of_a_stopped_sandbox_is_not_an_error_message(tmp_path: Path,
                                                             pbx_cfg: Config) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"pbx": {"sandbox_dir": str(tmp_path / "other")}}))
    proc = run_ivr(cfg, "pbx", "status")
    assert proc.returncode == 3 and proc.stdout.startswith("stopped")
