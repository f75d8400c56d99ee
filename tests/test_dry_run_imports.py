"""`ivr run --dry-run` loads only what it uses (issue 14 item 7, planning at scale): start-up
was a quarter of a dry run over 100,000 contacts. The real CLI in a child process, as an
operator runs it, on both backends; the modules it must not load are listed with why."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Backend, add_contact

# numpy: sqlite-utils imports it only for numpy column types (ivr.store.sqlite hides it);
# the rest: the run's, the web console's and the prompts' modules, none of them a plan's.
NEVER = ["numpy", "ivr.campaign.dialer", "ivr.app", "uvloop",
         "panoramisk", "pydub", "gtts", "httpx", "uvicorn", "starlette", "fastapi"]
# a PostgreSQL store's dry run opens no SQLite file: sqlite-utils stays unloaded
NEVER_PG = ["sqlite_utils", "ivr.store.sqlite"]

CHILD = """
import json, sys
sys.argv = ["ivr", "--config", sys.argv[1], "run", "--dry-run"]
from ivr.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _config(backend: Backend) -> Path:
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    data["store"] = backend.section()
    data["prompts"]["sources_dir"] = str((REPO / "prompts").resolve())
    data["prompts"]["build_dir"] = str(backend.home / "build")
    data["campaign"]["caller_id"] = "+33162000000"
    path = backend.home / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_a_dry_run_loads_none_of_the_modules_it_does_not_use(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # the key backend.open() writes with (PostgreSQL: Backend.key): another is refused
    monkeypatch.setenv("IVR_OPTOUT_KEY", backend.key.decode() if backend.url else "k" * 32)
    cfg_file = _config(backend)
    campaign = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))["campaign"]["name"]
    store = backend.open()
    for i in range(3):
        add_contact(store, f"+3316200010{i}", at=datetime.now(timezone.utc), basis="consent",
                    campaigns=(campaign,))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(cfg_file)], cwd=backend.home,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].endswith(" not"), proc.stdout  # the counts line
    due, waiting = (int(w) for w in proc.stdout.split()[-7::5])  # "N would ... M not"
    assert due + waiting == 3, proc.stdout
    loaded = set(json.loads(proc.stderr.rsplit("MODULES ", 1)[1]))
    assert "ivr.campaign.planning" in loaded  # the child did plan (the check can fail)
    never = NEVER + (NEVER_PG if backend.name == "postgresql" else [])
    assert sorted(loaded & set(never)) == []
    # holidays' country package imports all ~250 countries: only France's is needed
    assert sorted(m for m in loaded if m.startswith("holidays.countries")) == [
        "holidays.countries.france"]


def test_a_calendar_preloaded_alone_is_the_one_of_the_whole_package() -> None:
    """The preloaded module is the one the package then uses: same classes, same holidays,
    for a country and a subdivision, and an unknown code is still refused."""
    code = ("from ivr.compliance import calling_rules, holiday_load\n"
            "import holidays, json, sys\n"
            "def days(c, s):\n"
            "    return sorted((str(d), n) for d, n in holidays.country_holidays(\n"
            "        c, subdiv=s, years=[2026, 2027]).items())\n"
            "holiday_load.preload('FR'); holiday_load.preload('XX')\n"
            "alone = len([m for m in sys.modules if m.startswith('holidays.countries.')])\n"
            "first = days('FR', '974'), days('FR', None)\n"
            "cal = calling_rules._country_calendar('FR', ('976',))\n"
            "import holidays.countries as every\n"
            "same = every.France is sys.modules['holidays.countries.france'].France\n"
            "try:\n"
            "    holidays.country_holidays('XX'); refused = False\n"
            "except NotImplementedError:\n"
            "    refused = True\n"
            "print(json.dumps([alone, first == (days('FR', '974'), days('FR', None)), same,\n"
            "                  refused, len(every.__dict__) > 200, '2026-04-27' in cal]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, cwd=REPO)
    alone, same_days, same_class, refused, whole, mayotte = json.loads(proc.stdout)
    assert alone == 1 and same_days and same_class and refused and whole
    assert mayotte is True  # Mayotte's 27 April (abolition of slavery) from the subdivision
