"""A slot offered to the callee (flow.slots) must meet a calling window: with windows of
mornings only, a person who pressed "soir" was promised evening calls and was never called
again (each plan also searched 400 days for an opening that could not come)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from click.testing import CliRunner

from conftest import REPO, make_config
from ivr import config
from ivr.cli import cli
from ivr.compliance.calling_rules import SLOT, check_call
from ivr.compliance.consent_first import slot_problems, unreachable_slots
from ivr.compliance.prompt_legal import REQUIRED_PROMPTS

PARIS = ZoneInfo("Europe/Paris")
MORNINGS = [{"days": "mon-fri", "hours": ["10:00-13:00"]}]


def cfg_with(tmp_path: Path, windows: list[dict[str, Any]] | None, **flow: Any) -> config.Config:
    items: dict[str, Any] = {k: {"text": "Merci."} for k in REQUIRED_PROMPTS}
    items["intro"] = {"text": (REPO / "prompts/intro.txt").read_text(encoding="utf-8")}
    items["slot_question"] = {"text": (REPO / "prompts/slot_question.txt").read_text("utf-8")}
    legal = {"sender": "Marie Dupont, candidate", "postal_address": "1 rue", "email": "a@b.fr"}
    schedule = {"windows": windows} if windows is not None else {}
    return make_config(tmp_path, legal=legal, flow=flow, schedule=schedule,
                       prompts={"items": items, "build_dir": "build"})


def test_slots_outside_every_window_are_errors_naming_key_slot_and_windows(
        tmp_path: Path) -> None:
    problems = slot_problems(cfg_with(tmp_path, MORNINGS))
    assert problems == [
        ("error", "flow.slots.2: afternoon (14:00-17:00) meets none of schedule.windows "
                  "(mon-fri 10:00-13:00): a person choosing it would never be called back; "
                  "remove the slot or widen a window"),
        ("error", "flow.slots.3: evening (17:00-20:00) meets none of schedule.windows "
                  "(mon-fri 10:00-13:00): a person choosing it would never be called back; "
                  "remove the slot or widen a window")]


def test_the_default_windows_meet_every_slot(tmp_path: Path) -> None:
    assert unreachable_slots(cfg_with(tmp_path, None)) == []


def test_a_slot_meeting_a_window_on_one_day_only_or_in_part_passes(tmp_path: Path) -> None:
    windows = MORNINGS + [{"days": "sat", "hours": ["19:00-20:00"]},  # evening, Saturdays
                          {"days": "wed", "hours": ["16:30-17:00"]}]  # afternoon's last half-hour
    assert unreachable_slots(cfg_with(tmp_path, windows)) == []


def test_only_the_offered_slots_are_judged(tmp_path: Path) -> None:
    assert unreachable_slots(cfg_with(tmp_path, MORNINGS, slots={"1": "morning"})) == []
    assert slot_problems(cfg_with(tmp_path, MORNINGS, ask_slot=False))[0][0] == "warning"


def test_ivr_check_refuses_a_slot_no_window_meets(cfg_file: Path) -> None:
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    data.setdefault("schedule", {})["windows"] = [{"days": "mon-fri", "hours": ["14:00-17:00"]}]
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg_file), "check"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "meets none" in line]
    assert [line.split(":")[1].strip() for line in lines] == ["flow.slots.1", "flow.slots.3"], \
        result.output


def test_a_stored_slot_outside_the_windows_is_never_allowed() -> None:
    """A contact's slot from an earlier campaign's consent, judged under windows it never
    meets: refused, with no next time (found at once, not after a 400-day search)."""
    schedule = config.Schedule(windows=[config.Window(days="mon-fri", hours=["10:00-13:00"])])
    now = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)  # Tuesday 10:30 in Paris
    assert check_call(now, number="+33142000000", zone=PARIS, schedule=schedule,
                      preferred_slot="morning").allowed
    verdict = check_call(now, number="+33142000000", zone=PARIS, schedule=schedule,
                         preferred_slot="evening")
    assert (verdict.allowed, verdict.reason, verdict.next_allowed) == (False, SLOT, None)
