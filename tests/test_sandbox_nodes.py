"""`ivr pbx up --nodes N` without root: what each extra instance is given (its own
asterisk.conf directories, sounds folder, AMI and SIP ports, pid file, command line), which
instances `status`/`down` see, and prompts installed into and pruned from every instance's
sounds. tests/integration/test_node_pool.py starts them for real."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ivr.prompts.install import install_prompts_to_pbx
from ivr.config import Config
from ivr.errors import SandboxError
from ivr.prompts import prune as pr
from ivr.prompts.build import MANIFEST_NAME
from ivr.telephony import sandbox, sandbox_nodes
from ivr.telephony.contract import prompt_sound
from ivr.telephony.sandbox import Sandbox

from conftest import make_config, store_at


def _cfg(tmp_path: Path, port: int = 6038):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, pbx={"port": port, "sandbox_dir": "sb"})


def _directories(conf: str) -> dict[str, str]:
    section = conf.split("[directories]")[1].split("[options]")[0]
    return dict(re.findall(r"(\w+) => (\S+)", section))


def test_instance_one_is_the_sandbox_unchanged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    one = sandbox_nodes.instance(cfg, 1)
    assert type(one) is Sandbox
    assert one.asterisk("-rx", "x")[2:] == ["/usr/sbin/asterisk", "-rx", "x"]
    assert one.etc == one.root / "etc/asterisk" and one.pidfile.name == "asterisk.pid"
    dirs = _directories(one._conf_files({})["asterisk.conf"])
    assert dirs["astetcdir"] == "/etc/asterisk" and dirs["astrundir"] == "/var/run/asterisk"
    assert "port = 6038\n" in one._conf_files({})["manager.conf"]


def test_an_extra_instance_has_its_own_directories_and_ports(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    three = sandbox_nodes.instance(cfg, 3)
    files = three._conf_files({})
    dirs = _directories(files["asterisk.conf"])
    assert dirs == {"astetcdir": "/etc/asterisk-n3", "astdbdir": "/var/lib/asterisk-n3db",
                    "astspooldir": "/var/spool/asterisk-n3", "astrundir": "/var/run/asterisk-n3",
                    "astlogdir": "/var/log/asterisk-n3",
                    "astdatadir": "/usr/share/asterisk-n3",  # its own sounds/ (no astsoundsdir)
                    # shared: modules and var/lib
                    "astmoddir": "/usr/lib/x86_64-linux-gnu/asterisk/modules",
                    "astvarlibdir": "/var/lib/asterisk"}
    assert three.etc == three.root / "etc/asterisk-n3"
    assert "port = 6040\n" in files["manager.conf"] and three.ami_port == 6040
    assert "bind=127.0.0.1:5064" in files["pjsip.conf"]
    assert three.asterisk("-f")[2:] == ["/usr/sbin/asterisk", "-C",
                                        "/etc/asterisk-n3/asterisk.conf", "-f"]
    assert three.pidfile == tmp_path / "sb/asterisk-n3.pid"
    assert three.logfile == tmp_path / "sb/asterisk-n3.log"
    # The same AMI users and secret, the same FastAGI URL as instance 1.
    one = sandbox_nodes.instance(cfg, 1)._conf_files({})
    assert files["extensions.conf"] == one["extensions.conf"]
    assert files["manager.conf"].replace("6040", "6038") == one["manager.conf"]


def test_status_and_down_see_the_instances_with_a_pid_file(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    state = tmp_path / "sb"
    state.mkdir()
    assert sandbox_nodes.started(cfg) == [1]
    for name in ("asterisk-n3.pid", "asterisk-n2.pid", "asterisk-nx.pid", "other.pid"):
        (state / name).write_text("999999999")
    assert sandbox_nodes.started(cfg) == [1, 2, 3]
    # No such process: nothing is running, and down stops nothing (but clears stale files).
    assert [(i, st.running) for i, _, st in sandbox_nodes.status(cfg)] == \
        [(1, False), (2, False), (3, False)]
    assert sandbox_nodes.down(cfg) == [(3, False), (2, False), (1, False)]
    assert sandbox_nodes.started(cfg) == [1]


def test_down_tries_every_node_and_names_the_one_it_could_not_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "sb").mkdir()
    for name in ("asterisk-n2.pid", "asterisk-n3.pid"):
        (tmp_path / "sb" / name).write_text("1")
    tried: list[int] = []

    def down(self: Sandbox, timeout: float = 15) -> bool:
        index = getattr(self, "index", 1)
        tried.append(index)
        if index == 3:
            raise SandboxError("Asterisk pid 1 runs from the root /x")
        return True
    monkeypatch.setattr(Sandbox, "down", down)
    with pytest.raises(SandboxError, match=r"^node 3: Asterisk pid 1 runs from the root /x "
                                           r"\(node 2, node 1 stopped\)$"):
        sandbox_nodes.down(cfg)
    assert tried == [3, 2, 1]  # node 3's error stopped neither node 2 nor node 1


def test_up_one_node_clears_an_extra_node_s_stale_pid_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node 3's pid now belongs to `tail -f .sandbox/asterisk.log`: a stale file, not an
    Asterisk of another root, so `up --nodes 1` goes on (and leaves that process be)."""
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(sandbox, "port_open", lambda *a, **k: False)
    monkeypatch.setattr(sandbox_nodes, "port_open", lambda *a, **k: False)
    monkeypatch.setattr(Sandbox, "prepare", lambda self, log: None)  # no root to build
    monkeypatch.setattr(Sandbox, "up", lambda self, **kw: self.ami_port)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "/x/.sandbox/asterisk.log"])
    try:
        pidfile = tmp_path / "sb/asterisk-n3.pid"
        pidfile.parent.mkdir()
        pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 5
        while "asterisk" not in Path(f"/proc/{proc.pid}/cmdline").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sandbox_nodes.up(_cfg(tmp_path), 1, 1, None) == [(1, 6038)]
        assert not pidfile.exists() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_nodes_out_of_range_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="--nodes 0: use 1 to 9"):
        sandbox_nodes.up(_cfg(tmp_path), 0, 1, None)


def test_every_instance_points_asterisk_at_a_sounds_folder_of_its_own(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    found = []
    for i in range(1, 5):
        sb = sandbox_nodes.instance(cfg, i)
        data = _directories(sb._conf_files({})["asterisk.conf"])["astdatadir"]
        assert sb.sounds == sb.root / data.lstrip("/") / "sounds"  # where Asterisk plays from
        found.append(sb.sounds)
    assert found[0] == Sandbox(cfg).root / "usr/share/asterisk/sounds"
    assert len(set(found)) == 4


# -- a fake cached root (no chroot, no Asterisk): what `up` leaves in each instance's folders

@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root as mmdebstrap leaves it, in miniature: stock sounds behind Debian's alternatives
    symlink, a relative symlink out of the sounds, the simulated callees' sounds (so no TTS)."""
    monkeypatch.setattr(sandbox, "CACHE_DIR", tmp_path / "cache")
    r = tmp_path / "cache/root"
    data = r / "usr/share/asterisk"
    (data / "documentation").mkdir(parents=True)
    stock = data / "sounds/en_US_f_Allison"
    stock.mkdir(parents=True)
    (stock / "beep.gsm").write_bytes(b"stock beep")
    (r / "etc/alternatives").mkdir(parents=True)
    (r / "etc/alternatives/asterisk-prompt-en").symlink_to("/usr/share/asterisk/sounds/"
                                                           "en_US_f_Allison")
    (data / "sounds/en").symlink_to("/etc/alternatives/asterisk-prompt-en")
    (data / "sounds/custom").symlink_to("../../../local/share/asterisk/sounds")
    sim = data / "sounds/ivr-sim"
    sim.mkdir()
    for name in ("silence", "hello", "machine-greeting"):
        (sim / f"{name}.wav").write_bytes(b"RIFF " + name.encode())
    return r


def _build(cfg: Config, texts: dict[str, bytes]) -> dict[str, str]:
    """A build as `ivr prompts build` leaves it (wavs and manifest); key -> sha256."""
    out = cfg.path(cfg.prompts.build_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for key, data in texts.items():
        (out / f"{key}.wav").write_bytes(data)
        prompts[key] = {"sha256": hashlib.sha256(data).hexdigest(), "path": str(out / f"{key}.wav")}
    (out / MANIFEST_NAME).write_text(json.dumps({"version": 1, "prompts": prompts}))
    return {k: v["sha256"] for k, v in prompts.items()}


def _same(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and os.stat(a).st_ino == os.stat(b).st_ino


def test_an_instance_gets_its_own_sounds_hardlinked_from_instance_one(root: Path,
                                                                       tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    one, two = Sandbox(cfg), sandbox_nodes.SandboxNode(cfg, 2)
    two.install({})
    assert "astdatadir => /usr/share/asterisk-n2\n" in (two.etc / "asterisk.conf").read_text()
    assert two.sounds == root / "usr/share/asterisk-n2/sounds"
    assert two.sounds.is_dir() and not two.sounds.is_symlink()  # a folder, not a link to one
    for rel in ("en_US_f_Allison/beep.gsm", "ivr-sim/hello.wav", "ivr-sim/silence.wav"):
        assert _same(one.sounds / rel, two.sounds / rel), rel  # hardlinks: no second copy
    # Debian's `en` (-> /etc/alternatives -> instance 1's stock sounds) now leads to its own.
    assert os.readlink(two.sounds / "en") == "en_US_f_Allison"
    assert os.readlink(two.sounds / "custom") == "../../../local/share/asterisk/sounds"
    # Its other data entries are instance 1's, by relative links (the same inside the chroot).
    assert os.readlink(two.sounds.parent / "documentation") == "../asterisk/documentation"
    two.install({})  # idempotent
    assert _same(one.sounds / "ivr-sim/hello.wav", two.sounds / "ivr-sim/hello.wav")


def test_prompts_installed_reach_every_instance_and_a_later_one_at_start(
        root: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    sha = _build(cfg, {"intro": b"intro one", "legal": b"legal"})
    sandbox_nodes.SandboxNode(cfg, 2).install({})
    (tmp_path / "sb/asterisk-n2.pid").write_text("999999999")  # started by `up --nodes 2`
    dest = install_prompts_to_pbx(cfg)
    assert dest == Sandbox(cfg).sounds
    folders = sandbox_nodes.sounds_dirs(cfg)
    assert folders == [dest, root / "usr/share/asterisk-n2/sounds"]
    played = [f"{prompt_sound(cfg.campaign.name, k, h)}.wav" for k, h in sha.items()]
    for f in [*played, "ivr/intro.wav", "ivr/legal.wav"]:
        assert (dest / f).read_bytes() in (b"intro one", b"legal")
        assert _same(dest / f, folders[1] / f), f
    # A rebuild: the plain copy is replaced in every instance, the old version stays.
    sha2 = _build(cfg, {"intro": b"intro two", "legal": b"legal"})
    install_prompts_to_pbx(cfg)
    new = f"{prompt_sound(cfg.campaign.name, 'intro', sha2['intro'])}.wav"
    for folder in folders:
        assert (folder / "ivr/intro.wav").read_bytes() == b"intro two"
        assert (folder / new).read_bytes() == b"intro two" and (folder / played[0]).is_file()
    # `ivr pbx up --nodes 3` after the build: instance 3 starts with what instance 1 has.
    three = sandbox_nodes.SandboxNode(cfg, 3)
    three.install({})
    for f in [*played, new, "ivr/intro.wav"]:
        assert _same(dest / f, three.sounds / f), f
    assert sandbox_nodes.sounds_dirs(cfg) == [*folders, three.sounds]


def test_prune_removes_an_old_version_from_every_instance(root: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    for i in (2, 3):
        sandbox_nodes.SandboxNode(cfg, i).install({})
    old = _build(cfg, {"intro": b"intro one"})["intro"]
    install_prompts_to_pbx(cfg)
    os.utime(Sandbox(cfg).sounds / f"{prompt_sound(cfg.campaign.name, 'intro', old)}.wav",
             (1000, 1000))  # hardlinks: one inode, dated for every instance
    cur = _build(cfg, {"intro": b"intro two"})["intro"]
    install_prompts_to_pbx(cfg)
    folders = sandbox_nodes.sounds_dirs(cfg)
    assert len(folders) == 3
    old_f, cur_f = (f"{prompt_sound(cfg.campaign.name, 'intro', h)}.wav" for h in (old, cur))
    assert all((f / old_f).is_file() for f in folders)
    store = store_at(tmp_path / "t.db")
    now = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    dry = pr.prune(cfg, store, lambda: now, yes=False)
    assert [v.path for v in dry.remove] == [folders[0] / old_f] and dry.removed == []
    done = pr.prune(cfg, store, lambda: now, yes=True)
    assert sorted(done.removed) == sorted(f / old_f for f in folders)
    for f in folders:
        assert not (f / old_f).exists(), f
        assert (f / cur_f).read_bytes() == b"intro two" and (f / "ivr/intro.wav").is_file()


def test_pbx_cli_on_an_instance_not_up_names_it_and_its_up_command(cfg_file: Path) -> None:
    """It said "the sandbox PBX is not running: run `ivr pbx up`", which brings up only 1."""
    from click.testing import CliRunner

    from ivr.cli import cli

    def pbx_cli(node: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), "pbx", "cli", "--node",
                                          node, "core", "show", "channels"])
        assert result.exit_code == 1, result.output
        return result.output
    assert pbx_cli("2") == "error: instance 2 is not running: run `ivr pbx up --nodes 2`\n"
    assert pbx_cli("1") == "error: the sandbox PBX is not running: run `ivr pbx up`\n"
