"""The real-browser harness of the workbench: `mimamori api` as a process, Chromium, staff who sign in.

The API is the real command (``mimamori --config site.yaml api --port N``) on 127.0.0.1, over
the test's own namespaced settings, so it shares the case database and the stores with the
test. The browser is Debian's Chromium driven by Playwright with ``executable_path`` set
(``scripts/test`` installs it with apt-get); Playwright's browser download is never used.
Chrome treats http://127.0.0.1 as a secure context, so the Secure session cookie is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp

CHROMIUM = os.environ.get("MIMAMORI_CHROMIUM", "/usr/bin/chromium")
MIMAMORI = Path(sys.executable).with_name("mimamori")
PASSWORD = "correct horse battery staple 7"  # long enough for any sane password policy


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def api_process(site: list[str], port: int, log: Path, timeout_s: float = 90) -> Iterator[ApiProcess]:
    """``mimamori api`` on 127.0.0.1:port, up once /login answers; ended by its PID afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen([str(MIMAMORI), *site, "api", "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    api = ApiProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mimamori api exited with {process.returncode}:\n{api.log_tail()}")
            try:
                with urllib.request.urlopen(f"{api.url}/login", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mimamori api did not answer within {timeout_s} s:\n{api.log_tail()}")
            time.sleep(0.3)
        yield api
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's, never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            yield browser
        finally:
            browser.close()


def time_step() -> int:
    return int(time.time() // 30)


@dataclass
class Staff:
    """A user who completed their invitation: the password, the TOTP secret, the last time step used."""

    username: str
    role: str
    secret: str
    password: str = PASSWORD
    last_step: int | None = None

    def code(self) -> str:
        """A TOTP code the server accepts now: each step once, never an earlier one (services/users.py).

        The server takes the step before, the current one and the one after; the next unused of
        the current and the one after is taken, and only when both are used is the next step waited for.
        """
        while True:
            now = time_step()
            step = now if self.last_step is None else max(self.last_step + 1, now)
            if step <= now + 1:
                break
            time.sleep(30 - time.time() % 30 + 0.2)
        self.last_step = step
        return pyotp.TOTP(self.secret).generate_otp(step)


def invitation_token(text: str) -> str:
    """The token of the one-time invitation URL the CLI prints (``.../invite/<token>``)."""
    found = re.search(r"/invite/([A-Za-z0-9_\-]+)", text)
    if found is None:
        raise AssertionError(f"no invitation link in {text!r}")
    return found.group(1)


def enrol_staff(work, actor, username: str, role: str) -> Staff:
    """Create a user through the service and complete the invitation as the person would."""
    from mimamori.services import users

    invitation = users.create_user(work, actor, username, role)
    return complete_invitation(work, username, role, invitation.token)


def complete_invitation(work, username: str, role: str, token: str) -> Staff:
    from mimamori.services import users

    enrolment = users.begin_enrolment(work, token)
    staff = Staff(username, role, enrolment.secret)
    users.complete_enrolment(work, token, staff.password, staff.code())
    return staff


def sign_in(page, base: str, staff: Staff, next_path: str = "/") -> None:
    """The sign-in form (username and password), then the TOTP code form; then ``next_path``."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", staff.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("input[name=code]")
    page.fill("input[name=code]", staff.code())
    page.click("#code-form button[type=submit]")
    page.wait_for_load_state()
