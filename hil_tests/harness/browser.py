"""A real headless browser for tests: Debian's ``chromium`` driven through
Debian's ``chromium-driver`` by Selenium (installed by .ci/bootstrap.sh; never
a browser a Python package downloads).

The flags keep Chromium off the network (this machine's closed network
refuses background connections, and a test must never depend on them) and
start it with a fresh profile each time.

    with chromium(tmp_path) as browser:
        browser.get(url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
)


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed; the message says how to."""


def _find(candidates: tuple[str, ...], package: str) -> str:
    for candidate in candidates:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    raise BrowserMissing(f"{candidates[-1]} is not installed: the browser tests need Debian's {package} package "
                         f"(`sudo apt-get install {package}`, or run .ci/bootstrap.sh)")


@contextlib.contextmanager
def chromium(profile_dir: Path, width: int = 1280, height: int = 900, phone: bool = False) -> Iterator:
    """A Selenium Chrome WebDriver on Debian's chromium, quit on exit.
    ``phone``: a touch screen of ``width`` x ``height`` CSS pixels (device
    emulation: a headless window is never narrower than 500 pixels)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = _find(CHROMIUM, "chromium")
    driver_path = _find(CHROMEDRIVER, "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    profile = Path(profile_dir) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    if phone:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": True}})
    else:
        options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=driver_path, log_output=str(Path(profile_dir) / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
