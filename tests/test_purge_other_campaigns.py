"""Found in review: `ivr purge` deletes across the whole store, but took its floor (the span the
calling rules read back) from the config it was run with. Campaign A (60-day refusal cooldown,
retention 61 days) purged a refusal 90 days old that campaign C (120-day cooldown) still
honours, and C then called that person. Each run start now records its campaign's lookback
(`run_rules` in the audit); a purge shorter than another campaign's is refused, naming it, and
deletes nothing. On both backends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conftest import make_config
from ivr.errors import IvrError
from ivr.records.privacy import purge
from ivr.records.run_audit import lookbacks, record_rules
from ivr.store import Store
from test_privacy import add_contact, answered

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
NUM = "+33612345678"


def _cfg(name: str, cooldown: int) -> object:
    return make_config(campaign={"name": name, "caller_id": "+33162000000"},
                       schedule={"refusal_cooldown_days": cooldown},
                       retention={"days": max(cooldown, 61)})


def test_a_purge_shorter_than_another_campaigns_lookback_is_refused(store: Store) -> None:
    answered(store, add_contact(store, NUM, NOW - timedelta(days=91)), NOW - timedelta(days=90),
             "refusal", "2", campaign="camp-b")
    assert record_rules(_cfg("camp-c", 120), store, NOW - timedelta(days=5)) is True
    assert record_rules(_cfg("camp-a", 60), store, NOW) is True
    assert record_rules(_cfg("camp-a", 60), store, NOW) is False  # unchanged: no new row
    assert lookbacks(store) == {"camp-c": 120, "camp-a": 60}
    with pytest.raises(IvrError) as err:
        purge(store, timedelta(days=61), NOW, keep=timedelta(days=60), given="61d",
              campaign="camp-a")
    assert str(err.value) == (
        "--older-than 61d (61 days) is shorter than the 120 days campaign 'camp-c' reads back "
        "(its refusal cooldown or attempt cap, as its last run started): its refusals would "
        "be deleted and those people called again; use at least 120d")
    assert [r["kind"] for r in store.consents_of(NUM)] == ["refusal"]  # nothing deleted
    # camp-c's own purge is bounded by its config (keep), not by its own record
    with pytest.raises(IvrError, match="shorter than the 120 days the calling rules read"):
        purge(store, timedelta(days=61), NOW, keep=timedelta(days=120), campaign="camp-c")


def test_a_campaign_that_shortened_its_cooldown_no_longer_holds_the_purge(
        store: Store) -> None:
    answered(store, add_contact(store, NUM, NOW - timedelta(days=91)), NOW - timedelta(days=90),
             "refusal", "2", campaign="camp-b")
    record_rules(_cfg("camp-c", 120), store, NOW - timedelta(days=30))
    assert record_rules(_cfg("camp-c", 45), store, NOW - timedelta(days=1)) is True
    assert lookbacks(store)["camp-c"] == 45  # the latest start counts
    counts = purge(store, timedelta(days=61), NOW, keep=timedelta(days=60), campaign="camp-a")
    assert counts["consents"] == 1 and store.consents_of(NUM) == []


def test_ivr_run_records_the_lookback_and_ivr_purge_of_another_campaign_keeps_to_it(
        cfg_file, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the commands: `ivr run` of camp-c (120 days) records it; `ivr purge` with a
    config of another campaign sharing the store is refused, one line naming camp-c."""
    import yaml
    from click.testing import CliRunner

    from ivr import cli as cli_mod
    started: list[str] = []
    monkeypatch.setattr(cli_mod, "_run", lambda ctx, *a: started.append(ctx.cfg.campaign.name))
    monkeypatch.setattr(cli_mod, "_preflight", lambda *a: [])  # no prompts built here
    base = yaml.safe_load(cfg_file.read_text())
    for name, cooldown in (("camp-c", 120), ("camp-a", 60)):
        data = {**base, "campaign": {**base["campaign"], "name": name},
                "schedule": {**base.get("schedule", {}), "refusal_cooldown_days": cooldown}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    run = CliRunner().invoke(cli_mod.cli, ["--config", str(tmp_path / "camp-c.yaml"), "run"])
    assert run.exit_code == 0 and started == ["camp-c"], run.output
    out = CliRunner().invoke(cli_mod.cli, ["--config", str(tmp_path / "camp-a.yaml"), "purge",
                                           "--older-than", "61d"])
    assert out.exit_code == 1 and out.output.startswith(
        "error: --older-than 61d (61 days) is shorter than the 120 days campaign 'camp-c' "
        "reads back"), out.output
    assert len(out.output.strip().splitlines()) == 1
