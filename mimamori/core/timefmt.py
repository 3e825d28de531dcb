"""Times as mimamori writes them in events, replay plans and search results: ISO 8601 in UTC with a ``Z``."""

from __future__ import annotations

import datetime as dt
from typing import Literal

Precision = Literal["seconds", "milliseconds", "auto"]


def iso_z(moment: dt.datetime, timespec: Precision = "auto") -> str:
    """``2026-11-20T10:00:00.123Z`` for an aware time (converted to UTC first)."""
    return moment.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_z_from_epoch(seconds: float, timespec: Precision = "auto") -> str:
    return iso_z(dt.datetime.fromtimestamp(seconds, dt.UTC), timespec)


def now_iso_z(timespec: Precision = "milliseconds") -> str:
    return iso_z(dt.datetime.now(dt.UTC), timespec)
