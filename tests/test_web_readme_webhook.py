"""The README's webhook example is what records/webhooks.py `event` really sends: the same
fields, a real outcome name, the same values for the call it describes. On both backends: the
event is built from the store's call row, whose timestamps and numbers each backend gives in
its own types."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from conftest import CALLER_ID, add_contact, attempt
from ivr.callflow import outcomes
from ivr.records.webhooks import FIELDS, event
from ivr.store import CallResult, Store

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def _readme_example() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    part = text[text.index("**Outcome webhooks.**"):]
    found = re.search(r"```json\n(.*?)```", part, re.S)
    assert found, "README: the webhook example is a ```json block after **Outcome webhooks.**"
    return json.loads(found.group(1))


def _yes_path() -> Any:
    """The pure call flow's yes path, driven to its end."""
    from ivr.callflow.flow import FlowOptions, Result, call_flow
    gen, step = call_flow(FlowOptions(max_repeats=0, input_timeout_s=5), ""), None
    step = next(gen)
    try:
        while True:
            # a Chosen step (the consent stored before the goodbye) has no prompt
            step = gen.send(Result(key="1") if getattr(step, "prompt", None) == "intro"
                            else Result())
    except StopIteration as stop:
        return stop.value


def test_the_readme_webhook_example_is_a_real_event(store: Store) -> None:
    example = _readme_example()
    assert example["outcome"] in outcomes.ORDER
    if example["outcome"] == "message_played":  # the stage such a call really ends at
        assert example["stage"] == _yes_path().stage
    assert list(example) == ["event", "call_id", *FIELDS]
    contact = add_contact(store, example["number"], at=NOW, campaigns=(example["campaign"],))
    call = attempt(store, contact, example["campaign"], CALLER_ID, NOW, node=example["node"])
    store.mark_answered(call["id"], NOW + timedelta(seconds=4))
    store.finish_answered(call["id"], CallResult(example["outcome"], example["stage"], "1", {},
                                                 choice="consent"), NOW + timedelta(seconds=40))
    assert event(store.call(call["id"])) == example


def test_the_readmes_verifier_takes_a_real_signature_and_refuses_the_rest(
        monkeypatch: Any) -> None:
    """The receiver's check the README shows, run as written: a missing header (None) or one
    holding non-ASCII characters made hmac.compare_digest raise (a 500 at the receiver)."""
    import os

    from ivr.records.webhooks import ENV, sign
    text = (REPO / "README.md").read_text(encoding="utf-8")
    part = text[text.index("Check the signature on the receiving side"):]
    found = re.search(r"```python\n(.*?)```", part, re.S)
    assert found, "README: the verifier is a ```python block after its sentence"
    key = "k" * 40
    monkeypatch.setenv(ENV, key)
    assert os.environb[ENV.encode()] == key.encode()
    scope: dict[str, Any] = {}
    exec(found.group(1), scope)  # noqa: S102 (the README's own sample)
    genuine = scope["genuine"]
    body = b'{"event": "call.outcome", "call_id": 1}'
    assert genuine(body, sign(key.encode(), body)) is True
    assert genuine(body + b" ", sign(key.encode(), body)) is False
    for header in (None, "", "sha256=é", "sha256=" + "0" * 64, "\udcff"):
        assert genuine(body, header) is False
