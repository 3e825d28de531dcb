"""Argument types the CLI's commands share."""

from __future__ import annotations

import argparse
import datetime as dt


def aware_time(text: str) -> dt.datetime:
    """An ISO 8601 time with a time zone, or ``now`` (an argparse type)."""
    if text == "now":
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-20T10:00:00Z)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +01:00)")
    return value
