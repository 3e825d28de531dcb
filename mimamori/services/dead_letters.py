"""Re-driving dead letters after a fix: their original messages published again, audited."""

from __future__ import annotations

from collections import Counter

from mimamori.services.audit import Actor, record
from mimamori.services.workspace import Workspace
from mimamori.streams.dlq import redrive_dead_letters


def redrive(work: Workspace, actor: Actor, reason: str | None = None, dry_run: bool = False,
            again: bool = False) -> Counter:
    """Republish dead letters (of ``reason``); each once unless ``again``. Counts by reason.

    A dry run only reads the topic and is not audited."""
    counts = redrive_dead_letters(work.settings, reason, dry_run, again)
    if not dry_run:
        record(work.sessions, actor, "redrive_dead_letters", result_count=sum(counts.values()),
               dead_letter_reason=reason)
    return counts
