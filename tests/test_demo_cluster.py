"""`ivr demo --nodes N --controllers M`'s own logic: the controllers' configs and the lines
that say who placed each call (the end-to-end run is on the sandbox: tests/integration)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from ivr import config
from ivr.demo import DEMO_BEHAVIOURS, write_demo_csv
from ivr.demo_cluster import controller_files, print_calls
from ivr.errors import IvrError


def test_each_controller_gets_the_pool_the_store_and_its_own_agi_port(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({"campaign": {"name": "c", "caller_id": "+33199000000"},
                                        "agi": {"port": 4600}, "pbx": {"port": 6000}}))
    cfg = config.load(cfg_file)
    files = controller_files(cfg, cfg_file, "postgresql://ivr@127.0.0.1:5/demo", 3, 2)
    loaded = [config.load(f) for f in files]
    assert [c.agi.port for c in loaded] == [4600, 4601]
    for c in loaded:
        assert c.store.url == "postgresql://ivr@127.0.0.1:5/demo"
        assert [(n.name, n.port) for n in c.pbx.node_list()] == \
            [("pbx", 6000), ("pbx2", 6001), ("pbx3", 6002)]
        assert c.pbx.sandbox_dir == str(tmp_path / ".sandbox")  # absolute: same sandbox
        assert c.store.optout_key_file == loaded[0].store.optout_key_file  # one key for all


def test_demo_list_repeats_each_behaviour_per_block(tmp_path: Path) -> None:
    with write_demo_csv(tmp_path / "d.csv", blocks=3).open() as fh:
        numbers = [r["number"] for r in csv.DictReader(fh)]
    assert len(numbers) == len(set(numbers)) == 3 * len(DEMO_BEHAVIOURS)
    assert numbers[0] == "01 99 00 00 10" and numbers[-1] == "01 99 00 02 99"


def test_who_placed_each_call_and_the_totals() -> None:
    calls = [{"number": "+33199000010", "attempt": 1, "node": "pbx2", "controller": "h:11",
              "outcome": "message_played"},
             {"number": "+33199000020", "attempt": 1, "node": "pbx", "controller": "h:12",
              "outcome": "declined"},
             {"number": "+33199000070", "attempt": 1, "node": "pbx2", "controller": "h:11",
              "outcome": "busy"}]
    lines: list[str] = []
    print_calls(calls, lines.append, {"h:11": "controller-1", "h:12": "controller-2"})
    assert "node pbx2" in lines[0] and "controller-1 (h:11)" in lines[0]
    assert "controller-2 (h:12)" in lines[1]
    assert lines[-2] == "    per node: pbx 1, pbx2 2"
    assert lines[-1] == "    per controller: controller-1 2, controller-2 1"


def test_too_many_controllers_is_one_line(tmp_path: Path) -> None:
    from rich.console import Console

    from ivr.demo_cluster import run_cluster_demo
    cfg = config.from_dict({"campaign": {"name": "c", "caller_id": "+33199000000"}}, tmp_path)
    with pytest.raises(IvrError, match="--controllers 9: use 1 to 8"):
        run_cluster_demo(cfg, tmp_path / "config.yaml", Console(), 3, 9)


# A stand-in for `ivr run`: controller-1 fails at start (as when its agi.port is taken), the
# others would run for a minute; each writes its pid where the test can find it.
FAKE_RUN = """import os, sys, time
name = os.path.basename(sys.argv[2]).split('.')[0]
open(sys.argv[2] + '.pid', 'w').write(str(os.getpid()))
if name == 'controller-1':
    time.sleep(0.5)
    sys.exit(1)
time.sleep(60)
"""


@pytest.mark.parametrize("order", [("controller-1", "controller-2"),
                                   ("controller-2", "controller-1")])
def test_one_controller_failing_stops_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                order: tuple[str, str]) -> None:
    """The demo ended in error while the other controller went on dialling, unwatched."""
    import os
    import time

    from ivr import demo_cluster
    monkeypatch.setattr(demo_cluster, "RUN", FAKE_RUN)
    files = [tmp_path / f"{name}.yaml" for name in order]
    started = time.monotonic()
    with pytest.raises(IvrError, match="controller-1 failed"):
        demo_cluster._run_controllers(files, lambda line: None)
    assert time.monotonic() - started < 30  # not after the other's minute
    for f in files:
        pid = int(Path(str(f) + ".pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# A stand-in for `ivr run` that logs each signal it gets and ends 0.5 s after the first.
SIGNAL_LOGGER = """import os, signal, sys, time
log = open(sys.argv[2] + '.signals', 'a')
got = []
def note(sig, frame):
    got.append(sig)
    log.write(signal.Signals(sig).name + '\\n'); log.flush()
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
open(sys.argv[2] + '.ready', 'w').close()
end, first = time.monotonic() + 30, None
while time.monotonic() < end and (first is None or time.monotonic() < first + 0.5):
    if got and first is None:
        first = time.monotonic()
    time.sleep(0.05)
"""

HARNESS = """import sys
from pathlib import Path
from ivr import demo_cluster
demo_cluster.RUN = sys.argv[1]
try:
    demo_cluster._run_controllers([Path(p) for p in sys.argv[2:]], print)
except KeyboardInterrupt:
    print('interrupted')
"""


def test_ctrl_c_lets_every_controller_drain(tmp_path: Path) -> None:
    """The terminal's Ctrl-C reaches the controllers too; the demo must not add a SIGTERM,
    which a controller takes as the operator's second signal: hang up the calls in flight."""
    import os
    import signal
    import subprocess
    import sys
    import time

    files = [tmp_path / f"controller-{i}.yaml" for i in (1, 2)]
    demo = subprocess.Popen([sys.executable, "-c", HARNESS, SIGNAL_LOGGER, *map(str, files)],
                            start_new_session=True, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not all(Path(str(f) + ".ready").exists() for f in files):
        assert time.monotonic() < deadline, "the stand-in controllers did not start"
        time.sleep(0.05)
    os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = demo.communicate(timeout=30)
    assert "interrupted" in out
    for f in files:
        assert Path(str(f) + ".signals").read_text().split() == ["SIGINT"]


def test_both_demos_import_their_fiction_list_dated_today(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list is made as the demo starts, so today is its true acquisition date: no
    `acquired_on_missing` finding for it (import_demo_list, both demos). The campaign's other
    checks want built prompts: the list's own check is run here instead."""
    from datetime import datetime, timezone
    from ivr.compliance import campaign_check
    from ivr.compliance.preflight import check_sources
    from ivr.demo import import_demo_list
    from ivr.store.sqlite import Store
    checked: list[object] = []
    monkeypatch.setattr(campaign_check, "check_campaign",
                        lambda cfg, store: checked.append(store) or [])
    root = Path(__file__).resolve().parents[1]
    cfg = config.load(root / "config.yaml")
    store = Store.open(tmp_path / "demo.db", optout_key=b"demo-test")
    said: list[str] = []
    import_demo_list(cfg, store, said.append, blocks=2)
    today = datetime.now(timezone.utc).date().isoformat()
    sources = store.pending_sources(cfg.campaign.name)
    assert [(s["source"], s["acquired_on"]) for s in sources] == [("demo-fiction", today)]
    assert [v.code for v in check_sources(sources)] == []
    assert checked == [store]  # the demo still checks its campaign after the import
    assert said == [f"    {2 * len(DEMO_BEHAVIOURS)} added, 0 merged, 0 unchanged, 0 on the "
                    "opposition list (never called), 0 rejected"]
