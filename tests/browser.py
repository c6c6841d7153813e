"""Headless Chromium for the report's browser test: a thin layer over Selenium's Chrome driver.

Debian's ``chromium`` and ``chromium-driver`` packages (same source, so their versions always
match) are all it needs. The driver's path is given to Selenium explicitly, so Selenium Manager
never runs and nothing is downloaded.

    with Browser() as page:
        page.goto("file:///.../report.html")
        page.evaluate("document.title")
        page.evaluate("document.images.length", frame=page.frame("data:text/html"))
        page.screenshot(path)
        page.problems()  # console errors, uncaught exceptions, failed loads
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement

# Debian's packages install /usr/bin/chromium and /usr/bin/chromedriver.
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER = ("chromedriver",)
# What headless Chromium needs as root in a container: no setuid sandbox (root cannot use it),
# no GPU, /tmp instead of a small /dev/shm, no first-run work, no network calls of its own.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def _which(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return shutil.which(os.environ[env])
    return next((p for p in map(shutil.which, names) if p), None)


def find_chromium() -> tuple[str, str] | str:
    """(chromium, chromedriver) executables ($MEMLAB_CHROMIUM / $MEMLAB_CHROMEDRIVER if set,
    else the first on PATH), or why there are none (a sentence)."""
    browser = _which("MEMLAB_CHROMIUM", CHROMIUM)
    driver = _which("MEMLAB_CHROMEDRIVER", DRIVER)
    if browser and driver:
        return browser, driver
    missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
    return f"no {missing} installed (apt-get install chromium chromium-driver)"


class BrowserError(RuntimeError):
    """The browser did not start, a script failed, or a wait ran past its deadline."""


class Browser:
    """One headless Chromium with one tab, driven by chromedriver. Use as a context manager;
    every wait has a deadline and quit() ends the driver and its browser."""

    def __init__(
        self,
        executables: tuple[str, str] | None = None,
        *,
        timeout: float = 30.0,
        size: tuple[int, int] = (1400, 900),
    ):
        found = executables or find_chromium()
        if isinstance(found, str):
            raise BrowserError(found)
        chromium, chromedriver = found
        self.timeout = timeout
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        # Console messages, uncaught exceptions and failed loads, read with get_log("browser").
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(options, Service(executable_path=chromedriver))
        except WebDriverException as exc:
            raise BrowserError(f"cannot start {chromium} through {chromedriver}: {exc}") from exc
        self.driver.set_script_timeout(timeout)
        self.driver.set_page_load_timeout(timeout)
        # The window's size includes a frame: grow it so that the page itself gets size.
        inner = self.driver.execute_script("return [innerWidth, innerHeight]")
        outer = self.driver.get_window_size()
        self.driver.set_window_size(
            outer["width"] + size[0] - inner[0], outer["height"] + size[1] - inner[1]
        )
        self.version = self.driver.capabilities.get("browserVersion")
        self._log: list[dict[str, Any]] = []

    def close(self) -> None:
        self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def goto(self, url: str) -> None:
        """Navigate and wait for the page's load event."""
        self.driver.get(url)

    def frame(self, url_prefix: str) -> WebElement:
        """The first <iframe> of the page whose src starts with url_prefix (e.g. a data:
        iframe, whose document the page itself may not read: scripts run inside it)."""
        for el in self.driver.find_elements("css selector", "iframe"):
            if (el.get_attribute("src") or "").startswith(url_prefix):
                return el
        raise BrowserError(f"no frame with a URL starting {url_prefix!r}")

    def evaluate(self, expression: str, *, frame: WebElement | None = None) -> Any:
        """The value of a JS expression (promises awaited), in the page or in frame; a JS
        exception raises."""
        try:
            if frame is None:
                return self.driver.execute_script(f"return ({expression})")
            self.driver.switch_to.frame(frame)
            try:
                return self.driver.execute_script(f"return ({expression})")
            finally:
                self.driver.switch_to.default_content()
        except StaleElementReferenceException:
            raise
        except WebDriverException as exc:
            raise BrowserError(f"JS error in {expression[:200]!r}: {exc.msg}") from exc

    def wait_for(
        self,
        expression: str,
        what: str,
        *,
        frame: WebElement | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Poll a JS expression (in the page or in frame) until it is truthy; its value."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression, frame=frame)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {what} ({expression[:200]!r})")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        """The window as a PNG at path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise BrowserError(f"could not save a screenshot to {path}")
        return path

    def problems(self) -> list[str]:
        """Everything that went wrong so far: console errors, uncaught exceptions and failed
        loads (the browser log's SEVERE entries), one line each as 'source: message'."""
        self._log += self.driver.get_log("browser")  # the driver forgets what it returns
        return [f"{e['source']}: {e['message']}" for e in self._log if e["level"] == "SEVERE"]
