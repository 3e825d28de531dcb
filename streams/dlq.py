"""Re-drive dead letters: after a fix, publish their original messages again.

Each dead letter on ``media.dlq`` carries the original record (topic, key, value). Re-driving
publishes that value to that topic again; the pipeline's writes are idempotent, so
re-driving a letter twice, or one whose media was meanwhile indexed, changes nothing.
"""

from __future__ import annotations

import base64
from collections import Counter

from mimamori.config import Settings
from streams.events import DeadLetter
from streams.producer import shared_producer
from streams.topics import read_topic


def redrive_dead_letters(settings: Settings, reason: str | None = None, dry_run: bool = False) -> Counter[str]:
    """Republish the dead letters (of ``reason``, if given); return how many per reason."""
    producer = None if dry_run else shared_producer(settings.kafka)
    redriven: Counter[str] = Counter()
    for record in read_topic(settings, settings.kafka.topics.media_dlq.name):
        letter = DeadLetter.from_json(record.value)
        if reason is not None and letter.reason != reason:
            continue
        original = letter.original
        if producer is not None:
            key = original.get("key")
            producer.send(original["topic"], key=key.encode() if key is not None else None,
                          value=base64.b64decode(original["value_base64"]))
        redriven[letter.reason] += 1
    if producer is not None:
        producer.flush(timeout=30)
    return redriven
