"""A recorded intro (or slot question) says which key means what. When the flow's keys change
and only its transcript is edited, the audio still names the old keys: a callee told "2 for
no" would press 2 and be read as a consent by a run where 2 is yes. The build refuses a
recording that a build of the same audio (the last one, or an archived one) made for another
value of a key it says, and `ivr check` says so (ivr/prompts/manifest.recorded_keys_moved)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import make_config
from ivr.config import Config
from ivr.errors import PromptError
from ivr.prompts.build import build_prompts
from ivr.prompts.manifest import MANIFEST_NAME, build_problem
from test_prompt_build import EMAIL, ITEMS, SENDER, espeak_wav, write_source

SAID = ("Bonjour, ici {sender}. Pour ne plus être appelé, appuyez sur 9. Pour oui, appuyez sur "
        "{yes}. Pour non, appuyez sur {no}.")


def cfg(tmp_path: Path, yes: str, no: str) -> Config:
    """The transcript follows the keys; the audio is whatever intro.wav holds."""
    return make_config(
        tmp_path, legal={"sender": SENDER, "postal_address": "1 rue Haute, Lyon",
                         "email": EMAIL},
        flow={"yes_key": yes, "no_key": no},
        prompts={"engine": "espeak", "sources_dir": "sources", "build_dir": "build",
                 "items": {**ITEMS, "intro": {"file": "intro.wav", "transcript": SAID.format(
                     sender=SENDER, yes=yes, no=no)}}})


@pytest.fixture
def built_1_2(tmp_path: Path) -> Path:
    """intro.wav says 1 for yes, 2 for no, and was built so (archived)."""
    write_source(tmp_path, "intro.wav", espeak_wav(SAID.format(sender=SENDER, yes=1, no=2)))
    build_prompts(cfg(tmp_path, "1", "2"))
    return tmp_path


def test_keys_swapped_with_only_the_transcript_edited_is_refused(built_1_2: Path) -> None:
    before = (built_1_2 / "build" / MANIFEST_NAME).read_bytes()
    with pytest.raises(PromptError) as exc:
        build_prompts(cfg(built_1_2, "2", "1"))
    assert str(exc.value) == (
        "prompts.items.intro's recording intro.wav was made for flow.yes_key '1' (the config "
        "now says '2'): its audio still names the old key; record it again (or make it a "
        "text); nothing was built")
    assert (built_1_2 / "build" / MANIFEST_NAME).read_bytes() == before  # the old build stands


def test_the_archive_refuses_it_without_the_build_folder(built_1_2: Path) -> None:
    shutil.rmtree(built_1_2 / "build")  # a fresh deploy: prompts/build is not committed
    with pytest.raises(PromptError, match="flow.yes_key '1'"):
        build_prompts(cfg(built_1_2, "2", "1"))


def test_a_new_take_for_the_new_keys_builds_and_checks_clean(built_1_2: Path) -> None:
    write_source(built_1_2, "intro.wav", espeak_wav(SAID.format(sender=SENDER, yes=2, no=1)))
    new = cfg(built_1_2, "2", "1")
    manifest = build_prompts(new)
    assert manifest["flow_keys"]["yes_key"] == "2"
    assert build_problem(new) is None


def test_check_names_a_build_made_before_the_archive_was_read(built_1_2: Path) -> None:
    """A build of the old take for the new keys that got through (made by a release before
    this check): `ivr check` names the recording."""
    new = cfg(built_1_2, "2", "1")
    from ivr.prompts import manifest as mf
    saved = mf.recorded_keys_moved
    try:
        mf.recorded_keys_moved = lambda *a: []  # type: ignore[assignment]
        build_prompts(new)
    finally:
        mf.recorded_keys_moved = saved
    problem = build_problem(new)
    assert problem is not None and "intro's recording intro.wav was made for flow.yes_key '1'" \
        in problem and problem.endswith("run `ivr prompts build`")
