"""Open reports in headless Chromium, to check that they render and to time them.

Used by the browser test and the report benchmark. Needs ``selenium`` (a dev extra) and Debian's
``chromium`` and ``chromium-driver`` packages (``make browser`` installs them).

Example:
    >>> with headless_chromium(Path("/tmp/profile")) as driver:  # doctest: +SKIP
    ...     seconds = open_report(driver, Path("reports/demo/report.html"))
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Chromium flags: no sandbox (containers run as root), and nothing that talks to the network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)


def find_chromium() -> tuple[str, str] | None:
    """Return the paths of ``chromium`` and ``chromedriver``, or ``None`` if either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(user_data_dir: Path) -> Iterator[Any]:
    """Start headless Chromium with a fresh profile in ``user_data_dir``; yield its driver.

    Raises:
        RuntimeError: when Chromium or its driver is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed (see `make browser`)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_report(driver: Any, path: Path) -> float:
    """Open ``path`` from ``file://`` and return seconds until it loaded with images decoded."""
    driver.get(path.resolve().as_uri())  # returns once the load event has fired
    return float(
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(Array.from(document.images, i => i.decode()))"
            ".then(() => done(performance.now() / 1000));"
        )
    )
