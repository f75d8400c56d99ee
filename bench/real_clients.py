"""The clients an operator and a script really use, for bench_web's report.csv download:
Debian's chromium (driven by Playwright, headless, as the browser tests launch it) and curl.

- `Browser.download`: the operator's click on the download link: chromium logged in with the
  login form (its session cookie), the link clicked, timed from the click until Playwright
  reports the file complete on disk (its round trips, a few ms, included).
- `curl_timed`: one `curl` process a request, timed by curl itself (`%{time_total}`: from the
  connection to the last byte, decoded when `--compressed`; not the process's start-up).

Each raises SystemExit on an HTTP error. What they time sits beside httpx's figure, not in its
place: bench_web prints all of them.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh); Playwright's own is unreachable
ACCEPT_ENCODING = "gzip, deflate, br, zstd"  # what chromium 156 sends, over plain HTTP too

_CLICK = """(path) => {
  const a = document.createElement("a");
  a.href = path;
  document.body.appendChild(a);
  a.click();
  a.remove();
}"""


class Browser:
    """One headless chromium, logged in to the console with its login form."""

    def __init__(self, base_url: str, login: tuple[str, str]) -> None:
        if not Path(CHROMIUM).exists():
            raise SystemExit(f"{CHROMIUM} is missing: run scripts/setup.sh")
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        # --no-sandbox: chromium refuses to run as root otherwise (CI and this machine are root)
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox"])
        self.page = self._browser.new_page()
        self.page.goto(f"{base_url}/login")
        self.page.fill("#username", login[0])
        self.page.fill("#password", login[1])
        with self.page.expect_navigation():
            self.page.press("#password", "Enter")
        if "/login" in self.page.url:
            raise SystemExit(f"chromium: the console refused the login of {login[0]!r}")
        self.last: dict[str, Any] = {}

    def download(self, path: str, accept_encoding: str | None = None) -> float:
        """Milliseconds from the click on a link to `path` until the file is complete; with
        `accept_encoding`, chromium's own Accept-Encoding replaced by it (untimed)."""
        self.page.set_extra_http_headers({"Accept-Encoding": accept_encoding}
                                         if accept_encoding else {})
        t0 = time.perf_counter()
        with self.page.expect_download() as info:
            self.page.evaluate(_CLICK, path)
        saved = Path(info.value.path())  # waits for the end of the download
        ms = (time.perf_counter() - t0) * 1000
        if info.value.failure():
            raise SystemExit(f"chromium download {path}: {info.value.failure()}")
        self.last = {"body_bytes": saved.stat().st_size}
        info.value.delete()
        return ms

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def curl_timed(base_url: str, path: str, token: str, compressed: bool) -> float:
    """Milliseconds from curl's connection to its last byte (curl's own time_total)."""
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is missing: apt-get install curl")
    # The token on stdin as a header file (@-): never on a command line other users can read.
    cmd = [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
           "-H", "@-", *(["--compressed"] if compressed else []), f"{base_url}{path}"]
    out = subprocess.run(cmd, input=f"Authorization: Bearer {token}\n", capture_output=True,
                         text=True, check=True).stdout.split()
    if int(out[0]) >= 400:
        raise SystemExit(f"curl GET {path}: {out[0]}")
    return float(out[1]) * 1000
