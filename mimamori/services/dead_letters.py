"""Re-driving dead letters after a fix: their original messages published again, audited."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import sessionmaker

from mimamori.core.config import Settings
from mimamori.services.audit import Actor, record
from mimamori.streams.dlq import redrive_dead_letters


def redrive(settings: Settings, sessions: sessionmaker, actor: Actor, reason: str | None = None,
            dry_run: bool = False, again: bool = False) -> Counter:
    """Republish dead letters (of ``reason``); each once unless ``again``. Counts by reason."""
    counts = redrive_dead_letters(settings, reason, dry_run, again)
    if not dry_run:
        record(sessions, actor, "redrive_dead_letters", result_count=sum(counts.values()), reason=reason)
    return counts
