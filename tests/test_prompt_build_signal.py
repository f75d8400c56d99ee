"""Found in review: Ctrl-C or SIGTERM between two of a rebuild's renames left a new
goodbye.wav beside the old message.wav and the old manifest (`ivr check` saw nothing; the
install then failed). The wavs and their manifest are now put in place with the signals held:
the signal is delivered once both are, and the folder is the new build, whole."""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from ivr.prompts import build as prompt_build
from ivr.prompts.build import build_prompts
from test_prompt_build import make_cfg


def test_a_signal_between_two_renames_waits_for_the_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_prompts(make_cfg(tmp_path))
    changed = {"message": {"text": "Votez bien."}, "goodbye": {"text": "Bonne soirée."}}
    real_replace, wavs = os.replace, []

    def replace(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        if str(dst).endswith(".wav") and "cache" not in str(dst):
            wavs.append(dst)
            if len(wavs) == 1:  # after the first of the two
                signal.raise_signal(signal.SIGINT)
    monkeypatch.setattr(prompt_build.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build_prompts(make_cfg(tmp_path, changed))
    build = tmp_path / "build"
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["prompts"]["message"]["text"] == "Votez bien." and len(wavs) == 2
    for key, entry in manifest["prompts"].items():
        digest = hashlib.sha256((build / f"{key}.wav").read_bytes()).hexdigest()
        assert digest == entry["sha256"], key
