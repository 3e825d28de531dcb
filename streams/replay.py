"""Replays and backfills: run the pipeline again over a time range of a topic.

A replay reads the offsets that ``offsets_for_times`` gives for the range on every partition,
under a consumer group of its own (``<group>.replay.<from>-<to>``), so the live group's
committed offsets never move. Every write downstream is an idempotent upsert: replaying a
range twice changes no count. With another embedder, the media are embedded again into that
model's own collection (see ``mimamori collections promote``).
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from mimamori.core.config import Settings
from mimamori.core.errors import InvalidInput
from mimamori.core.timefmt import iso_z_from_epoch
from mimamori.streams.kafka_source import PartitionRead, plan_partition_reads
from mimamori.streams.topics import REPLAY_GROUP_MARK


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    group_id: str
    from_ms: int
    to_ms: int
    partitions: list[PartitionRead]

    @property
    def total(self) -> int:
        return sum(p.stop_offset - p.start_offset for p in self.partitions)

    def describe(self) -> str:
        lines = [f"replay of {self.topic} from {_iso(self.from_ms)} to {_iso(self.to_ms)} "
                 f"under consumer group {self.group_id}: {self.total} message(s)"]
        lines += [f"  partition {p.partition}: offsets {p.start_offset} to {p.stop_offset} "
                  f"({p.stop_offset - p.start_offset})" for p in self.partitions]
        return "\n".join(lines)


def _iso(ms: int) -> str:
    return iso_z_from_epoch(ms / 1000, "seconds")


def replay_group(settings: Settings, from_ms: int, to_ms: int) -> str:
    return f"{settings.kafka.consumer_group}{REPLAY_GROUP_MARK}{from_ms}-{to_ms}"


def plan_replay(settings: Settings, topic: str, start: dt.datetime, stop: dt.datetime) -> ReplayPlan:
    if start.tzinfo is None or stop.tzinfo is None:
        raise InvalidInput("naive_time", "give the replay's start and stop with a time zone (2026-11-20T10:00:00Z)")
    if stop <= start:
        raise InvalidInput("empty_range", "the replay's stop must be after its start")
    from_ms, to_ms = int(start.timestamp() * 1000), int(stop.timestamp() * 1000)
    group = replay_group(settings, from_ms, to_ms)
    reads = plan_partition_reads(settings.kafka.client_options(), topic, None, from_ms, to_ms)
    return ReplayPlan(topic, group, from_ms, to_ms, [
        PartitionRead(r.topic, r.partition, r.start_offset, max(r.start_offset, r.stop_offset or r.start_offset))
        for r in reads])


class ReplayProgress:
    """Follows the replay group's committed offsets; prints progress and an ETA until stopped."""

    def __init__(self, settings: Settings, plan: ReplayPlan, interval_s: float = 5.0, out: Any = None):
        self.settings, self.plan, self.interval_s, self.out = settings, plan, interval_s, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def done(self) -> int:
        consumer = KafkaConsumer(**self.settings.kafka.client_options(), group_id=self.plan.group_id,
                                 enable_auto_commit=False)
        try:
            total = 0
            for read in self.plan.partitions:
                committed = consumer.committed(TopicPartition(read.topic, read.partition)) or read.start_offset
                total += max(0, min(committed, read.stop_offset) - read.start_offset)
            return total
        finally:
            consumer.close()

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.interval_s):
            done, total = self.done(), self.plan.total
            elapsed = time.monotonic() - began
            eta = f", about {elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
            print(f"replay: {done}/{total} messages ({100 * done / max(1, total):.0f}%){eta}",
                  file=self.out or sys.stderr, flush=True)

    def __enter__(self) -> ReplayProgress:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
