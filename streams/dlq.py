"""Re-drive dead letters: after a fix, publish their original messages again.

Each dead letter on ``media.dlq`` carries the original record (topic, key, value). Re-driving
publishes that value to that topic again; the pipeline's writes are idempotent, so
re-driving a letter twice, or one whose media was meanwhile indexed, changes nothing.

A re-drive reads under a consumer group of its own per reason filter and commits when done,
so the next re-drive with the same filter takes only letters that arrived since: a letter
that fails again comes back as a new letter, once, not once per re-drive. ``again`` takes
every letter on the topic once more.
"""

from __future__ import annotations

import base64
from collections import Counter

from mimamori.core.config import Settings
from mimamori.streams.events import DeadLetter
from mimamori.streams.producer import shared_producer
from mimamori.streams.topics import GroupReader


def redrive_group(settings: Settings, reason: str | None) -> str:
    return f"{settings.kafka.consumer_group}.dlq-redrive.{reason or 'all'}"


def redrive_dead_letters(settings: Settings, reason: str | None = None, dry_run: bool = False,
                         again: bool = False) -> Counter[str]:
    """Republish the dead letters not re-driven yet (of ``reason``, if given); return how many per reason."""
    producer = None if dry_run else shared_producer(settings.kafka)
    reader = GroupReader(settings, settings.kafka.topics.media_dlq.name, redrive_group(settings, reason), again)
    redriven: Counter[str] = Counter()
    try:
        for record in reader.records():
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
            reader.commit()  # only once every message is on its topic again
    finally:
        reader.close()
    return redriven
