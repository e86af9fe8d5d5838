"""Open a page in headless Chromium the way a user does, and read back what happened: console errors, failed
loads, images decoded, text shown, a screenshot. Drives Debian's `chromium` over the DevTools protocol on a
pipe (`--remote-debugging-pipe`: NUL-separated JSON on file descriptors 3 and 4), so it needs no Python
browser package and no browser download. `tools/browser.sh` installs the package; tests skip without it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ERROR_EVENTS = ("Runtime.exceptionThrown", "Log.entryAdded", "Runtime.consoleAPICalled")

# Load every lazy image now and wait until each has decoded (or failed): naturalWidth per image.
DECODE_ALL_JS = """Promise.all([...document.images].map(img => { img.loading = 'eager';
  return img.decode().then(() => img.naturalWidth, () => 0); }))"""


def chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _error_text(event: dict) -> str | None:
    """The message of an error event (an exception, an error log entry or console.error), else None."""
    method, p = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        return p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"]["text"]
    if method == "Log.entryAdded" and p["entry"]["level"] == "error":
        return f"{p['entry']['text']} {p['entry'].get('url', '')}".strip()
    if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
        return " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
    return None


@dataclass
class PageVisit:
    """What a user got: load time, errors, each image's naturalWidth, the values of `expressions`."""

    load_s: float
    errors: list[str]
    image_widths: list[int]
    values: dict[str, object] = field(default_factory=dict)


class Browser:
    """One headless Chromium; `visit` opens pages in a fresh tab each."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed (tools/browser.sh installs it)")
        self.size, self._buf, self._id, self._events = (width, height), b"", 0, []
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        to_chrome, from_chrome = os.pipe(), os.pipe()
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}"]  # fmt: skip

        def fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome[0]), os.dup(from_chrome[1])
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_chrome[0])
        os.close(from_chrome[1])
        self._w, self._r = (
            os.fdopen(to_chrome[1], "wb", buffering=0),
            os.fdopen(from_chrome[0], "rb", buffering=0),
        )

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = self._r.read(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def _wait_for(self, method: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self._events):
            if time.monotonic() > end:
                raise TimeoutError(f"no {method} within {timeout} s")
            self._events.append(self._read())

    def _eval(self, session: str, expression: str) -> object:
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        r = self.call("Runtime.evaluate", params, session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def _screenshot(self, session: str, path: Path, max_height: int) -> None:
        """The page from its top, as tall as its content up to `max_height` pixels."""
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": self.size[0], "height": min(size["height"], max_height), "scale": 1}
        params = {"format": "png", "clip": clip, "captureBeyondViewport": True}
        shot = self.call("Page.captureScreenshot", params, session)
        path.write_bytes(base64.b64decode(shot["data"]))

    def visit(self, page: Path, expressions: dict[str, str] | None = None, screenshot: Path | None = None,
              max_height: int = 900, timeout: float = 60.0) -> PageVisit:  # fmt: skip
        """Open `page`, wait for its load event, decode every image, evaluate `expressions`, screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=s)
        w, h = self.size
        self.call("Emulation.setDeviceMetricsOverride", {"width": w, "height": h, "deviceScaleFactor": 1,
                                                         "mobile": False}, s)  # fmt: skip
        self._events.clear()
        t0 = time.monotonic()
        self.call("Page.navigate", {"url": page.resolve().as_uri()}, s)
        self._wait_for("Page.loadEventFired", timeout)
        load_s = time.monotonic() - t0
        widths = self._eval(s, DECODE_ALL_JS)
        values = {k: self._eval(s, js) for k, js in (expressions or {}).items()}
        if screenshot is not None:
            self._screenshot(s, screenshot, max_height)
        errors = [t for t in map(_error_text, self._events) if t]
        self.call("Target.closeTarget", {"targetId": target})
        return PageVisit(load_s, errors, list(widths), values)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self._proc.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
