"""Helpers for the dashboard tests: a real `bantzd serve`, and Debian's Chromium driven by
Selenium through Debian's chromedriver (installed by .ci/install-chromium).

Without a browser the browser test skips, naming the script; under `CI=true` it fails
instead: CI must run it. Screenshots are kept under $BANTZ_ARTIFACTS (default
/tmp/bantzd-artifacts) and their paths printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL = ".ci/install-chromium"


@dataclass
class Served:
    """A running `bantzd serve`: its process, its base URL and token."""

    proc: subprocess.Popen[str]
    base: str
    token: str

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_serve(home: Path, env: dict[str, str], *extra: str, timeout: float = 20) -> Served:
    """Start `bantzd --home HOME serve --port 0 ...` and read the address it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bantzd", "--home", str(home), "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    line = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("http://") or proc.poll() is not None:
            break
    if not line.startswith("http://"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"bantzd serve printed no address: {line!r} {err!r}")
    url = line.strip()
    base, _, token = url.partition("/?token=")
    return Served(proc, base, token)


def _no_browser(reason: str) -> Any:
    message = f"no browser for the dashboard test: {reason} (install one with {INSTALL})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test, but {message}")
    pytest.skip(message)


def chromium() -> Any:
    """A headless Chromium under Selenium, or skip/fail saying how to get one."""
    browser = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        return _no_browser("chromium and chromedriver are not both on PATH")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return _no_browser("the selenium package is missing (pip install '.[test]')")
    # Selenium Manager must not look for (or download) a browser or driver: both are given.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1500",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as e:  # the driver's own words: a version mismatch, a missing library
        return _no_browser(f"chromium did not start: {str(e).strip()[:300]}")


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("BANTZ_ARTIFACTS", "/tmp/bantzd-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
