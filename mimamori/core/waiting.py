"""Waiting for something to become ready, with a deadline and the last error seen."""

from __future__ import annotations

import time
from collections.abc import Callable

from mimamori.core.errors import MimamoriError, Unavailable


class NotReady(Unavailable):
    reason_default = "not_ready"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Poll ``check`` until it is true; raise ``NotReady`` naming ``what`` after ``timeout_s``.

    A ``MimamoriError`` from ``check`` is a definite answer (a process died, a bad setting)
    and ends the wait at once; any other exception is a check that has not passed yet.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except MimamoriError:
            raise
        except Exception as error:  # a health check may fail in many ways before it passes
            last_error = error
        time.sleep(interval_s)
    detail = f" (last error: {last_error})" if last_error else ""
    raise NotReady(f"{what} not ready after {timeout_s:.0f} s{detail}")
