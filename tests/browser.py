"""Load a report in headless Chromium from disk, as a colleague's browser would, with no network.

Needs Debian's ``chromium`` package (``make test`` tries to install it); tests marked ``needs_browser``
skip without it and say so.
"""

import shutil
import subprocess

import pytest

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="headless Chromium not found: apt-get install chromium to run this check"
)


def load(html_path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console lines the browser logged."""
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        html_path.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def assert_renders(html_path, titles: tuple[str, ...]) -> str:
    """The report opens with no console output and shows every section title; returns the DOM."""
    dom, console = load(html_path)
    assert console == [], console
    for title in titles:
        assert f"<h2>{title}</h2>" in dom, title
    return dom
