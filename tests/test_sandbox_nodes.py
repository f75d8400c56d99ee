"""`ivr pbx up --nodes N` without root: what each extra instance is given (its own
asterisk.conf directories, AMI and SIP ports, pid file, command line), and which instances
`status`/`down` see. tests/integration/test_node_pool.py starts them for real."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr.errors import SandboxError
from ivr.telephony import sandbox_nodes
from ivr.telephony.sandbox import Sandbox

from conftest import make_config


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
                    # shared: modules, var/lib and the (content-addressed) sounds
                    "astmoddir": "/usr/lib/x86_64-linux-gnu/asterisk/modules",
                    "astvarlibdir": "/var/lib/asterisk", "astdatadir": "/usr/share/asterisk"}
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


def test_nodes_out_of_range_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="--nodes 0: use 1 to 9"):
        sandbox_nodes.up(_cfg(tmp_path), 0, 1, None)
