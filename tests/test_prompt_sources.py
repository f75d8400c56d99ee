"""Issue 16 item 10: the campaign's prompt texts live in prompts/, committed; config.yaml points
to them (text_file:); prompts/build/ and the archive stay out of git."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_config
from ivr.errors import ConfigError


def test_config_yaml_points_every_prompt_to_a_committed_file_in_prompts() -> None:
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert data["prompts"]["sources_dir"] == "prompts"
    tracked = set(subprocess.run(["git", "ls-files", "prompts"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.split())
    for key, item in data["prompts"]["items"].items():
        assert set(item) == {"text_file"}, key  # no text inline in config.yaml
        assert f"prompts/{item['text_file']}" in tracked, key


@pytest.mark.parametrize("path", ["prompts/build/intro.wav", "prompts/archive/x.wav"])
def test_built_and_archived_audio_are_not_committed(path: str) -> None:
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def test_text_file_is_read_as_the_prompt_text(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/intro.txt").write_text("Bonjour,\nici Marie.\n", encoding="utf-8")
    cfg = make_config(tmp_path, prompts={"sources_dir": "src",
                                         "items": {"intro": {"text_file": "intro.txt"}}})
    assert cfg.prompts.items["intro"].text == "Bonjour,\nici Marie.\n"


@pytest.mark.parametrize(("item", "words"), [
    ({"text_file": "missing.txt"}, "prompts.items.intro.text_file: cannot read"),
    ({"text_file": "intro.txt", "text": "x"}, "keep only one of text:, text_file: and file:"),
    ({"text_file": "intro.txt", "file": "intro.wav"}, "keep only one"),
])
def test_a_bad_text_file_is_one_line_naming_the_key(tmp_path: Path, item: dict[str, str],
                                                   words: str) -> None:
    (tmp_path / "intro.txt").write_text("Bonjour.", encoding="utf-8")
    with pytest.raises(ConfigError, match=words) as exc:
        make_config(tmp_path, prompts={"sources_dir": ".", "items": {"intro": item}})
    assert "\n" not in str(exc.value)
