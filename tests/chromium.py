"""Open a local page in headless Chromium and say what a reader would see go wrong: images
that did not load and console errors. Speaks the DevTools protocol over a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on file descriptors 3 and 4), so it needs no
websocket library and no port."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BROKEN_IMAGES = ("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                 ".map(i => i.getAttribute('src'))")


def find_browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    """What Chromium found on one page."""

    title: str = ""
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Pipe:
    """The two ends of the DevTools pipe: send a command, wait for its answer, keep the events."""

    def __init__(self, to_browser: int, from_browser: int, timeout: float) -> None:
        self.to_browser, self.from_browser = to_browser, from_browser
        self.deadline = time.monotonic() + timeout
        self.buffer, self.events, self.next_id = b"", [], 1

    def _message(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.next_id += 1
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._message())


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
    return errors


def _high(ends: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved above 9, so putting them on 3 and 4 in the child clobbers neither."""
    moved = tuple(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 10) for end in ends)
    for end in ends:
        os.close(end)
    return moved


def check_page(browser: str, page: Path, timeout: float = 60.0) -> PageCheck:
    """Load `page` (a local file) and report its title, image count, broken images and errors."""
    to_read, to_browser = _high(os.pipe())
    from_browser, to_write = _high(os.pipe())
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
               "--no-first-run", f"--user-data-dir={page.parent / '.chromium-profile'}"]

    def onto_3_and_4() -> None:  # in the child, before exec: the pipe's fixed descriptors
        os.dup2(to_read, 3)
        os.dup2(to_write, 4)

    process = subprocess.Popen(command, pass_fds=(3, 4), preexec_fn=onto_3_and_4,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_read)
    os.close(to_write)
    pipe = _Pipe(to_browser, from_browser, timeout)
    try:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Page.navigate", session, url=page.resolve().as_uri())
        pipe.wait_for("Page.loadEventFired")
        def evaluate(expression: str):
            return pipe.call("Runtime.evaluate", session, expression=expression,
                             returnByValue=True)["result"]["value"]
        check = PageCheck(title=evaluate("document.title"),
                          images=evaluate("document.images.length"),
                          broken_images=evaluate(BROKEN_IMAGES))
        check.errors = _errors(pipe.events)
        try:
            pipe.call("Browser.close")
        except (ConnectionError, TimeoutError):
            pass  # it may exit before answering
        return check
    finally:
        os.close(to_browser)
        os.close(from_browser)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(page.parent / ".chromium-profile", ignore_errors=True)
