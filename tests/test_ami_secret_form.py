"""The AMI secret from the environment (IVR_AMI_SECRET, IVR_AMI_SECRET_<NAME>) is one line of
printable characters: a line break would add header lines to the Login action, and lines to
the sandbox's manager.conf (`write = all` in the controller's own section). A `;`, which starts
a comment in manager.conf, is written escaped: it stays part of the secret (before, the
secret was cut there and every login refused with a misleading hint)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_config
from ivr import app
from ivr.errors import PbxError, SandboxError
from ivr.telephony.pbx_probe import node_secret
from ivr.telephony.sandbox import Sandbox


def _cfg(tmp_path: Path, **pbx: object):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, pbx={"port": 6038, "sandbox_dir": "sb", **pbx})


def test_a_semicolon_is_escaped_in_manager_conf(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_AMI_SECRET", "pa;ss-word-long")
    conf = Sandbox(_cfg(tmp_path))._manager_conf()
    assert "secret = pa\\;ss-word-long\n" in conf
    assert app.ami_secret(_cfg(tmp_path)) == "pa;ss-word-long"  # Login sends it as it is


@pytest.mark.parametrize("secret", ["pa\nwrite = all", "pa\rss", "pa\x1bss", "pa\tss"])
def test_a_control_character_is_one_line_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("IVR_AMI_SECRET", secret)
    for read in (lambda: Sandbox(_cfg(tmp_path))._manager_conf(),
                 lambda: app.ami_secret(_cfg(tmp_path)),
                 lambda: node_secret(_cfg(tmp_path), "pbx")):
        with pytest.raises(PbxError) as exc:
            read()
        assert str(exc.value).startswith("IVR_AMI_SECRET holds a line break or a control "
                                         "character") and "\n" not in str(exc.value)


def test_a_nodes_own_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_AMI_SECRET_PBX2", "x\ny")
    cfg = _cfg(tmp_path, mode="external", nodes=[
        {"name": "pbx2", "host": "127.0.0.1", "port": 6040, "user": "ivr"}])
    with pytest.raises(PbxError, match="^IVR_AMI_SECRET_PBX2 holds a line break"):
        app.ami_secret(cfg, "pbx2")


def test_spaces_around_a_sandbox_secret_are_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_AMI_SECRET", " spaced ")
    with pytest.raises(SandboxError, match="begins or ends with a space"):
        Sandbox(_cfg(tmp_path))._manager_conf()


def test_ivr_checks_probe_names_a_bad_secret_as_a_finding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe of `ivr check` read the secret outside its own guard: a secret with a line
    break ended the whole check on one line, every other finding dropped."""
    import asyncio

    from ivr.telephony import pbx_probe
    monkeypatch.setenv("IVR_AMI_SECRET", "pa\nss")
    cfg = _cfg(tmp_path)
    found = asyncio.run(pbx_probe._probe_node(cfg, cfg.pbx.node_list()[0], "x"))
    assert found is not None and [f.code for f in found] == ["pbx_ami_login"]
    assert "IVR_AMI_SECRET holds a line break" in found[0].message
