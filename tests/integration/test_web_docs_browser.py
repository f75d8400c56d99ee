"""/api/docs in a real browser (Debian's chromium, headless): under the console's own
Content-Security-Policy the page renders every operation of the OpenAPI document, and the
browser reports no blocked resource and no script error (FastAPI's Swagger page, loaded from a
CDN with an inline script, rendered blank here). Needs `ivr web` only, not the sandbox."""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, live_console

SHOTS = REPO / "docs" / "screenshots"


def test_the_api_docs_render_under_the_csp(browser: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPTOUT_KEY", os.urandom(16).hex())
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "campaign": {"name": "docs", "caller_id": "+33162000000"},
        "store": {"path": str(tmp_path / "docs.db")}}))
    url, proc = live_console(cfg_file, tmp_path / "web.log")
    try:
        with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=10) as r:
            doc = json.load(r)
        wanted = {(p, m.upper()) for p, item in doc["paths"].items() for m in item}
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      locale="en-GB")
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        response = page.goto(f"{url}/api/docs")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        shown = {(el.get_attribute("data-path"), el.get_attribute("data-method"))
                 for el in page.query_selector_all("article.operation")}
        assert shown == wanted
        assert page.is_visible("#openapi-json")
        height = page.evaluate("document.querySelector('#operations').offsetHeight")
        assert height > 900  # rendered, not blank
        assert problems == []
        assert all(u.startswith(url) for u in requested), requested  # nothing from elsewhere
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "api-docs.png"), full_page=False)
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
