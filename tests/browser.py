"""Headless Chromium driven over the Chrome DevTools Protocol, for the report's browser test.

Only the standard library: Chromium is started with ``--remote-debugging-pipe`` and speaks CDP
on its file descriptors 3 (commands in) and 4 (replies and events out) as NUL-terminated JSON,
so no websocket library, webdriver or downloaded browser is needed; Debian's ``chromium``
package is enough. Every wait has a deadline, and the browser's whole process group is killed
on ``close()`` (also when a test fails), so a hung browser cannot hang the suite.

    with Browser() as browser:
        page = browser.new_page()
        page.goto("file:///.../report.html")
        page.evaluate("document.title")
        page.screenshot(path)
        page.problems()  # console errors, uncaught exceptions, failed loads
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Debian's package installs /usr/bin/chromium; other distributions name it differently.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
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
)


def find_chromium() -> str | None:
    """The Chromium executable: $MEMLAB_CHROMIUM if set, else the first one on PATH."""
    if os.environ.get("MEMLAB_CHROMIUM"):
        return shutil.which(os.environ["MEMLAB_CHROMIUM"])
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(RuntimeError):
    """A CDP command failed, the browser died, or a wait ran past its deadline."""


class Browser:
    """One headless Chromium process and its CDP pipe. Use as a context manager."""

    def __init__(self, executable: str | None = None, *, timeout: float = 30.0, size=(1400, 900)):
        self.timeout = timeout
        self.size = size
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="memlab-chromium-")
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._dead: str | None = None
        # Our ends: we write commands to cmd_w, read messages from out_r. The child gets
        # cmd_r as fd 3 and out_w as fd 4 (moved there in preexec, after the fork).
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())

        def child_fds():
            a, b = os.dup(cmd_r), os.dup(out_w)  # above 4, so the dup2s cannot clobber them
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [
                exe,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={size[0]},{size[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=child_fds,
            close_fds=False,
            start_new_session=True,  # its own process group: close() kills renderers too
        )
        os.close(cmd_r)
        os.close(out_w)
        self._w = cmd_w
        self._r = out_r
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except BaseException:
            self.close()
            raise

    # -- transport --------------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        try:
            while chunk := os.read(self._r, 1 << 16):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                with self._lock:
                    for raw in messages:
                        msg = json.loads(raw)
                        if "id" in msg:
                            self._replies[msg["id"]] = msg
                        else:
                            self._events.append(msg)
                    self._lock.notify_all()
        except OSError:
            pass
        with self._lock:
            self._dead = "the browser closed its DevTools pipe"
            self._lock.notify_all()

    def send(self, method: str, session: str | None = None, timeout: float | None = None, **params):
        """Send a CDP command and wait for its result (a dict); raises on a CDP error."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"{method}: cannot write to the browser: {exc}") from exc
        reply = self._wait(lambda: self._replies.pop(msg_id, None), method, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _wait(self, found: Callable[[], Any], what: str, timeout: float | None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._lock:
            while (value := found()) is None:
                if self._dead:
                    raise BrowserError(f"waiting for {what}: {self._dead}{self._stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"timed out waiting for {what}{self._stderr_tail()}")
                self._lock.wait(min(left, 0.5))
            return value

    def events(self, session: str | None = None) -> list[dict]:
        with self._lock:
            return [m for m in self._events if session is None or m.get("sessionId") == session]

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\nchromium stderr (tail):\n{tail}" if tail else ""

    # -- pages ------------------------------------------------------------------------------

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        """Ask the browser to quit, then kill its process group; remove the profile."""
        if self.proc.poll() is None:
            try:
                os.write(self._w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        # The group this Popen started, nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader.join(5)
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab, attached over a flat CDP session, recording what goes wrong on it."""

    def __init__(self, browser: Browser, session: str):
        self.browser = browser
        self.session = session
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        width, height = browser.size
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def send(self, method: str, timeout: float | None = None, **params) -> dict:
        return self.browser.send(method, self.session, timeout, **params)

    def events(self, method: str | None = None) -> list[dict]:
        return [m for m in self.browser.events(self.session) if method in (None, m["method"])]

    def goto(self, url: str, timeout: float | None = None) -> None:
        """Navigate and wait for the load event of this navigation."""
        seen = len(self.events("Page.loadEventFired"))
        reply = self.send("Page.navigate", url=url)
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        self.browser._wait(
            lambda: len(self.events("Page.loadEventFired")) > seen or None,
            f"load of {url}",
            timeout,
        )

    def evaluate(self, expression: str, *, context: int | None = None, timeout=None) -> Any:
        """The value of a JS expression (promises awaited); a JS exception raises."""
        params: dict[str, Any] = {
            "expression": expression,
            "returnByValue": True,
            "awaitPromise": True,
        }
        if context is not None:
            params["contextId"] = context
        reply = self.send("Runtime.evaluate", timeout=timeout, **params)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JS error in {expression[:200]!r}: {text}")
        return reply["result"].get("value")

    def wait_for(
        self, expression: str, what: str, *, context: int | None = None, timeout=None
    ) -> Any:
        """Poll a JS expression (in the page, or in an execution context) until it is truthy;
        its value."""
        deadline = time.monotonic() + (self.browser.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression, context=context)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {what} ({expression[:200]!r})")
            time.sleep(0.1)

    def frame_context(self, url_prefix: str) -> int:
        """An execution context in the (first) child frame whose URL starts with url_prefix,
        e.g. a data: iframe, whose document the page itself may not read (opaque origin)."""

        def child(tree: dict):
            for sub in tree.get("childFrames", []):
                if sub["frame"].get("url", "").startswith(url_prefix):
                    return sub["frame"]["id"]
                if found := child(sub):
                    return found
            return None

        frame = child(self.send("Page.getFrameTree")["frameTree"])
        if frame is None:
            raise BrowserError(f"no frame with a URL starting {url_prefix!r}")
        world = self.send("Page.createIsolatedWorld", frameId=frame, worldName="memlab-test")
        return world["executionContextId"]

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def problems(self) -> list[str]:
        """Everything that went wrong so far: console errors, uncaught exceptions, error log
        entries and failed resource loads, one line each."""
        out = []
        for m in self.events():
            p = m.get("params", {})
            if m["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                args = [a.get("value", a.get("description", "")) for a in p.get("args", [])]
                out.append(f"console.{p['type']}: {' '.join(map(str, args))}")
            elif m["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                desc = d.get("exception", {}).get("description") or d.get("text")
                out.append(f"uncaught exception: {desc}")
            elif m["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                e = p["entry"]
                out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
            elif m["method"] == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"failed load: {p.get('errorText')} (request {p.get('requestId')})")
        return out
