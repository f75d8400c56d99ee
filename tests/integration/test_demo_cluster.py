"""`ivr demo --nodes 3 --controllers 2` end to end (issue 14 item 5) on the real sandbox: the
command itself starts its private PostgreSQL (its own folder and port here), three Asterisk
nodes, imports the demo's 42 fiction numbers and runs two `ivr run` processes. Its printed
table must name, for every attempt in the store, the node and the controller that placed it,
and its totals per node and per controller must be the store's."""
from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ivr.config import Config

from .cluster_kit import NODES, ivr, rows
from .conftest import free_port, itest_config_dict
from .test_cluster import nodes  # noqa: F401  (the fixture: three nodes, then one again)

# "    +33199000010  attempt 1  node pbx2   controller-1 (3f…)  message_played"
CALL_LINE = re.compile(r"^\s+(\+\d+)  attempt (\d+)  node (\S+)\s+(\S+) \(([^)]*)\)  (\S+)$")
TOTALS = re.compile(r"^\s+per (node|controller): (.*)$")
STARTED = re.compile(r"^\s+controller (controller-\d+): pid (\d+),")
STORE_URL = re.compile(r"^store\.url: (\S+)\s+\(export PGPASSFILE=(\S+);")
DEMO_CALLS = 14 * 3  # demo.DEMO_BEHAVIOURS, demo_cluster.BLOCKS times


def demo_config(tmp_path: Path, pbx_cfg: Config, pg_dir: Path) -> Path:
    """The itest config with its own private PostgreSQL (folder, port), FastAGI ports and key;
    the prompts the session built."""
    data = itest_config_dict(tmp_path)
    data["prompts"]["build_dir"] = str(pbx_cfg.path(pbx_cfg.prompts.build_dir))
    data["store"]["optout_key_file"] = str(tmp_path / "optout.key")
    data["db"] = {"dir": str(pg_dir), "port": free_port()}
    data["agi"]["port"] = free_port()  # the second controller takes the next one
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def totals(text: str) -> Counter[str]:
    """"pbx 14, pbx2 15" as a Counter."""
    return Counter({k: int(n) for k, n in (part.rsplit(" ", 1) for part in text.split(", "))})


def test_demo_three_nodes_two_controllers(nodes: Path, pbx_cfg: Config,  # noqa: F811
                                          tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pg_dir = Path(tempfile.mkdtemp(prefix="ivr-pg-demo-"))  # under /tmp: postgres reaches it
    cfg_file = demo_config(tmp_path, pbx_cfg, pg_dir)
    try:
        out = ivr(cfg_file, "demo", "--nodes", "3", "--controllers", "2", timeout=150)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        lines = out.stdout.splitlines()
        (url, pgpass), = [m.groups() for m in map(STORE_URL.match, lines) if m]
        monkeypatch.setenv("PGPASSFILE", pgpass)
        calls = rows(url, "SELECT * FROM calls ORDER BY id")
        controllers = rows(url, "SELECT id, pid FROM controllers")
    finally:
        ivr(cfg_file, "db", "down")
        shutil.rmtree(pg_dir, ignore_errors=True)
    # Each controller process, named by the demo, and its row in `controllers`.
    pids = {int(m.group(2)): m.group(1) for m in map(STARTED.match, lines) if m}
    assert sorted(pids.values()) == ["controller-1", "controller-2"], lines[:40]
    name_of = {str(k["id"]): pids[int(k["pid"])] for k in controllers}
    # One printed line per attempt of the store: its number, attempt, node, controller.
    printed = [m.groups() for m in map(CALL_LINE.match, lines) if m]
    expected = [(c["number"], str(c["attempt"]), c["node"], name_of[c["controller"]],
                 c["controller"], c["outcome"]) for c in calls]
    assert sorted(printed) == sorted(expected), (printed, expected)
    assert len({c["number"] for c in calls}) == DEMO_CALLS
    assert all(c["outcome"] for c in calls), [c for c in calls if not c["outcome"]]
    # The totals: per node and per controller, as the store has them; everyone took part.
    shown = {m.group(1): totals(m.group(2)) for m in map(TOTALS.match, lines) if m}
    assert shown["node"] == Counter(c["node"] for c in calls)
    assert shown["controller"] == Counter(name_of[c["controller"]] for c in calls)
    assert set(shown["node"]) == set(NODES), shown
    assert set(shown["controller"]) == {"controller-1", "controller-2"}, shown
