"""The README's AMI user for one's own Asterisk is the one the sandbox writes: its read and write
classes and its event filters, one per event the controller asks for (ami.WANTED_EVENTS). A new
event added to the code without the README's filter would never reach a production run."""
from __future__ import annotations

import re
from pathlib import Path

from ivr.telephony.ami import WANTED_EVENTS
from ivr.telephony.sandbox import AMI_READ, AMI_WRITE

README = Path(__file__).resolve().parents[1] / "README.md"


def _block() -> list[str]:
    own = README.read_text(encoding="utf-8").split("## Using it in your own Asterisk", 1)[1]
    fenced = re.search(r"```\n(\s*\[general\].*?)```", own, re.S)
    assert fenced, "no manager.conf block in 'Using it in your own Asterisk'"
    return [line.strip() for line in fenced.group(1).splitlines() if line.strip()]


def test_the_readme_ami_user_is_the_sandboxs() -> None:
    lines = _block()
    user = lines[lines.index("[ivr]"):]
    assert f"read = {AMI_READ}" in user and f"write = {AMI_WRITE}" in user
    filters = [ln.split("Event: ", 1)[1] for ln in user if ln.startswith("eventfilter")]
    assert filters == [f"{e}[[:space:]]" for e in sorted(WANTED_EVENTS)]
    assert "bindaddr = 127.0.0.1" in lines and "enabled = yes" in lines
