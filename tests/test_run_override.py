"""Issue 16 item 2 in the CLI: a décret override is printed by every run and dry run, and a
run writes it to the audit table."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import yaml
from click.testing import CliRunner

from conftest import make_config
from ivr.cli import cli
from ivr.compliance.campaign_check import check_campaign
from ivr.records.run_audit import audit_run_start
from ivr.store import Store

REASON = "by-election called at short notice, prefecture informed on 2026-11-20"
WIDE = {"windows": [{"days": "mon-sun", "hours": ["08:00-22:00"]}], "override_reason": REASON}
NOW = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)


def with_schedule(cfg_file: Path, schedule: dict[str, object]) -> Path:
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data["schedule"] = schedule
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return cfg_file


def test_dry_run_prints_the_override_every_time(cfg_file: Path) -> None:
    with_schedule(cfg_file, WIDE)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["--config", str(cfg_file), "run", "--dry-run"])
        assert result.exit_code == 0, result.output
        lines = [ln for ln in result.output.splitlines() if ln.startswith("warning ")]
        assert any("window_wider_than_decree" in ln and REASON in ln for ln in lines)


def test_without_the_reason_the_dry_run_refuses(cfg_file: Path) -> None:
    with_schedule(cfg_file, {"windows": WIDE["windows"]})
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "run", "--dry-run"])
    assert result.exit_code == 1 and "schedule.override_reason" in result.output


def test_a_run_start_audits_the_override_and_its_reason(store: Store) -> None:
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"}, schedule=WIDE)
    assert audit_run_start(cfg, store, check_campaign(cfg, store), NOW) is True
    (row,) = store.q("SELECT action, detail FROM audit")
    assert row["action"] == "decree_override" and REASON in row["detail"]
    assert "window_wider_than_decree" in row["detail"] and '"campaign": "c1"' in row["detail"]


def test_a_run_within_the_decree_audits_nothing(store: Store) -> None:
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33162000000"})
    assert audit_run_start(cfg, store, check_campaign(cfg, store), NOW) is False
    assert store.q("SELECT * FROM audit") == []


def test_the_pending_callees_reach_the_fiction_caller_id_rule(store: Store) -> None:
    store.add_contact("+33612345678", name=None, timezone=None, source="s", basis="consent",
                      acquired_on="2026-01-01", extra="{}", status="pending", now=NOW)
    store.bind_contacts(["+33612345678"], campaign="c1", source="s", basis="consent",
                        acquired_on="2026-01-01", now=NOW)
    cfg = make_config(campaign={"name": "c1", "caller_id": "+33199000000"})
    codes = [v.code for v in check_campaign(cfg, store) if v.is_error]
    assert "caller_id_fiction" in codes
