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
from conftest import add_contact as _add_contact
from test_privacy import answered

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
NUM = "+33612345678"


def add_contact(store: Store, number: str, at: datetime) -> dict:  # type: ignore[type-arg]
    return _add_contact(store, number, at=at, campaigns=("camp-b",), basis="consent",
                        acquired_on="2026-01-01")


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
        "(its refusal cooldown or attempt cap, as its last run or check recorded it): "
        "refusals it still honours would be deleted and those people called again; use at "
        "least 120d")
    assert [r["kind"] for r in store.consents_of(NUM)] == ["refusal"]  # nothing deleted
    # camp-c's own purge is bounded by its config (keep), not by its own record
    with pytest.raises(IvrError, match="shorter than the 120 days the calling rules read"):
        purge(store, timedelta(days=61), NOW, keep=timedelta(days=120), campaign="camp-c")


def test_a_campaign_that_shortened_its_cooldown_no_longer_holds_the_purge(
        store: Store) -> None:
    answered(store, add_contact(store, NUM, NOW - timedelta(days=91)), NOW - timedelta(days=90),
             "refusal", "2", campaign="camp-b")
    record_rules(_cfg("camp-b", 60), store, NOW - timedelta(days=30))  # its contact is due
    record_rules(_cfg("camp-c", 120), store, NOW - timedelta(days=30))
    assert record_rules(_cfg("camp-c", 45), store, NOW - timedelta(days=1)) is True
    assert lookbacks(store)["camp-c"] == 45  # the latest start counts
    counts = purge(store, timedelta(days=61), NOW, keep=timedelta(days=60), campaign="camp-a")
    assert counts["consents"] == 1 and store.consents_of(NUM) == []


def test_ivr_check_records_the_lookback_and_ivr_purge_of_another_campaign_keeps_to_it(
        cfg_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the commands: `ivr check` of camp-c (120 days) records it; `ivr purge` with a
    config of another campaign sharing the store is refused, one line naming camp-c."""
    import yaml
    from click.testing import CliRunner

    from ivr import cli as cli_mod
    base = yaml.safe_load(cfg_file.read_text())
    for name, cooldown in (("camp-c", 120), ("camp-a", 60)):
        data = {**base, "campaign": {**base["campaign"], "name": name},
                "schedule": {**base.get("schedule", {}), "refusal_cooldown_days": cooldown}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    CliRunner().invoke(cli_mod.cli, ["--config", str(tmp_path / "camp-c.yaml"), "check"])
    out = CliRunner().invoke(cli_mod.cli, ["--config", str(tmp_path / "camp-a.yaml"), "purge",
                                           "--older-than", "61d"])
    assert out.exit_code == 1 and out.output.startswith(
        "error: --older-than 61d (61 days) is shorter than the 120 days campaign 'camp-c' "
        "reads back"), out.output
    assert len(out.output.strip().splitlines()) == 1


def test_a_run_records_its_span_once_it_holds_the_campaign_and_a_refused_one_does_not(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Found in the diff's review: recorded before the run lock, a second `ivr run` of a
    running campaign, refused, still wrote its edited (shorter) config's span."""
    import asyncio

    from ivr import app
    from ivr.errors import StoreError
    from ivr.store.base import RunOwner

    async def no_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return None, None
    monkeypatch.setattr(app, "_run_campaign", no_run)
    first, second = Store.open(tmp_path / "ivr.db"), Store.open(tmp_path / "ivr.db")
    asyncio.run(app.run_campaign(_cfg("camp-c", 120), first))
    assert lookbacks(first) == {"camp-c": 120}
    with first.hold_run(RunOwner.this_process(NOW), "camp-c"):
        with pytest.raises(StoreError, match="is in use by ivr run"):
            asyncio.run(app.run_campaign(_cfg("camp-c", 45), second))
    assert lookbacks(second) == {"camp-c": 120}


def test_a_campaign_with_contacts_to_call_and_no_recorded_span_holds_the_purge(
        store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found in the diff's review: a campaign that had not run since the upgrade (or only
    imported its lists) recorded nothing, and the purge went ahead below its cooldown."""
    from ivr.records.contacts import import_csv
    path = tmp_path / "c.csv"
    path.write_text("number\n0612345699\n")
    import_csv(store, path, campaign="camp-c", source="l", basis="consent",
               acquired_on="2026-01-01", default_region="FR", now=NOW)
    with pytest.raises(IvrError) as err:
        purge(store, timedelta(days=61), NOW, keep=timedelta(days=60), campaign="camp-a")
    assert str(err.value) == (
        "campaign 'camp-c' still has contacts to call and has recorded no span of its calling "
        "rules (neither run nor checked since this release): a purge might delete refusals it "
        "honours; run `ivr --config <its config> check` once for each, then purge again")
    record_rules(_cfg("camp-c", 60), store, NOW)  # its `ivr check`
    assert purge(store, timedelta(days=61), NOW, keep=timedelta(days=60),
                 campaign="camp-a")["cutoff"]
