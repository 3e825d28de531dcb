"""A Python-native Kafka source for Beam: a splittable DoFn over partitions and offsets.

Delivery guarantee: **at least once**. A message's offset is committed to the consumer
group only in the finalization of the bundle that read it, which the runner calls after
the bundle's outputs are durably processed. The pipeline keeps everything from this
source to the stores in one fused stage (no shuffle in between), so "the bundle is done"
means "its faces are written". After a crash, reading resumes from the last committed
offset and some messages are processed twice; every write downstream is an idempotent
upsert under a key derived from the content, so each face is stored exactly once.

Watermarks follow the messages' timestamps. A read can be bounded by a start and a stop
time (replays: ``offsets_for_times``) and can end once the topic has been idle for a
while (demos and tests: ``until_idle_s``).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration, Timestamp
from kafka import KafkaConsumer, TopicPartition

from mimamori.core.metrics import CONSUMER_LAG
from mimamori.core.retry import OUTAGES, with_retries
from mimamori.streams.events import KafkaRecord
from mimamori.streams.kafka_clients import PartitionReader, SharedClients

log = logging.getLogger(__name__)
UNBOUNDED = sys.maxsize


@dataclass(frozen=True)
class PartitionRead:
    """Read one partition from ``start_offset`` up to ``stop_offset`` (exclusive; None: forever)."""

    topic: str
    partition: int
    start_offset: int
    stop_offset: int | None = None


def plan_partition_reads(
    client_options: dict[str, Any],
    topic: str,
    group_id: str | None,
    start_time_ms: int | None = None,
    stop_time_ms: int | None = None,
) -> list[PartitionRead]:
    """Where each partition's read starts and stops.

    Start: the first offset at or after ``start_time_ms`` if given, else the group's committed
    offset, else the beginning. Stop: the first offset at or after ``stop_time_ms`` (the end
    of the partition if there is none), else unbounded.
    """
    consumer = KafkaConsumer(**client_options, group_id=group_id, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)

        def at_time(ms: int) -> dict[TopicPartition, int]:
            found = consumer.offsets_for_times({tp: ms for tp in tps})
            return {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in tps}

        if start_time_ms is not None:
            starts = at_time(start_time_ms)
        else:
            starts = {}
            for tp in tps:
                committed = consumer.committed(tp) if group_id else None
                starts[tp] = committed if committed is not None else beginning[tp]
        stops: dict[TopicPartition, int | None] = (
            dict(at_time(stop_time_ms)) if stop_time_ms is not None else dict.fromkeys(tps)
        )
        return [PartitionRead(topic, tp.partition, starts[tp], stops[tp]) for tp in tps]
    finally:
        consumer.close()


# A range's ``last_activity`` while the records of the bundle that read it are still being processed.
ACTIVE_UNTIL_NEXT_BUNDLE = math.inf


class _PartitionRange(OffsetRange):
    """An offset range that remembers when its partition last had a message (wall clock).

    It travels with the restriction through every checkpoint, so "idle for N seconds" holds
    on any runner, whichever worker and DoFn instance resumes the read.
    """

    def __init__(self, start: int, stop: int, last_activity: float):
        super().__init__(start, stop)
        self.last_activity = last_activity

    def split_at(self, split_pos: int) -> tuple[_PartitionRange, _PartitionRange]:
        return (_PartitionRange(self.start, split_pos, self.last_activity),
                _PartitionRange(split_pos, self.stop, self.last_activity))


class _PartitionTracker(OffsetRestrictionTracker):
    """Allows checkpoints (the runner resumes the remainder later) but no split of a partition.

    A runner splits a slow bundle's restriction in two to read it in parallel. For a Kafka
    partition that would be wrong twice over: two readers would commit the group's offset out
    of order (a later range committing first loses the earlier one on a crash), and half of an
    unbounded range starts at an offset Kafka will not reach for centuries.
    """

    def try_split(self, fraction_of_remainder: float):
        if fraction_of_remainder > 0:
            return None
        return super().try_split(0)


class _OffsetRangeProvider(RestrictionProvider):
    def initial_restriction(self, element: PartitionRead) -> _PartitionRange:
        stop = element.stop_offset if element.stop_offset is not None else UNBOUNDED
        return _PartitionRange(element.start_offset, max(stop, element.start_offset), time.time())

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _PartitionTracker(restriction)

    def restriction_size(self, element: PartitionRead, restriction: OffsetRange) -> int:
        return 1 if restriction.stop == UNBOUNDED else restriction.size()

    def split(self, element: PartitionRead, restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction  # one reader per partition keeps offsets contiguous for commits

    def truncate(self, element: PartitionRead, restriction: OffsetRange) -> None:
        return None  # on drain, stop reading at once


@beam.DoFn.unbounded_per_element()
class _ReadPartition(beam.DoFn):
    """Reads one partition; yields ``KafkaRecord``s stamped with the message time."""

    def __init__(self, client_options: dict[str, Any], group_id: str | None, until_idle_s: float | None,
                 poll_s: float = 1.0, max_records: int = 500):
        self.client_options = client_options
        self.group_id = group_id
        self.until_idle_s = until_idle_s
        self.poll_s = poll_s
        self.max_records = max_records

    def setup(self) -> None:
        self._clients = SharedClients.acquire(self.client_options, self.group_id)

    def teardown(self) -> None:
        # A runner may tear the DoFn down while a bundle's finalization is still in flight (Flink
        # sends the last finalizations as the job ends): the shared clients never close a
        # committer under a running commit, and a late finalizer makes a new one.
        self._clients.release()

    def _commit(self, tp: TopicPartition, next_offset: int) -> None:
        try:
            self._clients.commit(tp, next_offset)
        except Exception as error:
            # Beam only logs a failed finalizer as a warning; this one means a re-read (or, if a
            # later bundle's commit succeeds, nothing at all: offsets only move forward).
            log.warning("committing %s offset %d failed: those messages will be read again unless a "
                        "later commit succeeds: %s", tp, next_offset, error)
            OUTAGES.failed("kafka", f"commit of {tp.topic}[{tp.partition}]", error)
            raise

    def _broker_answers(self, reader: PartitionReader) -> bool:
        """Whether the partition's end offset can be read now (a poll that got nothing cannot tell)."""
        tp = reader.tp
        try:
            reader.end_offset(timeout_ms=2000)
        except Exception as error:  # a timeout or a refused connection: the broker is away
            OUTAGES.failed("kafka", f"read of {tp.topic}[{tp.partition}]", error)
            return False
        OUTAGES.recovered("kafka")
        return True

    def process(
        self,
        element: PartitionRead,
        # Beam passes the finalizer by position and the tracker and estimator by name:
        # the finalizer must come first.
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_OffsetRangeProvider()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ) -> Iterator[beam.window.TimestampedValue]:
        tp = TopicPartition(element.topic, element.partition)
        restriction = tracker.current_restriction()
        if restriction.last_activity == ACTIVE_UNTIL_NEXT_BUNDLE:
            restriction.last_activity = time.time()  # the bundle that read last has ended
        # A new reader bootstraps from the broker: while it is away, wait for it (not a failed job).
        reader = with_retries(lambda: self._clients.reader(tp, self.max_records), "connect to the Kafka broker",
                              store="kafka", operation="connect")
        position = restriction.start

        last_offset: int | None = None
        deadline = time.monotonic() + self.poll_s
        finished = False
        claim_refused = False  # a refused claim (past the stop offset) has already ended the restriction
        claimed = 0
        while time.monotonic() < deadline and not finished and claimed < self.max_records:
            records = reader.poll(position, timeout_ms=200, max_records=self.max_records - claimed)
            for record in records:
                if not tracker.try_claim(record.offset):
                    finished = claim_refused = True  # past the stop offset
                    break
                seconds = record.timestamp / 1000.0
                current = watermark.current_watermark()
                if current is None or Timestamp.of(seconds) > current:
                    watermark.set_watermark(Timestamp.of(seconds))
                last_offset = record.offset
                position = record.offset + 1
                claimed += 1
                yield beam.window.TimestampedValue(
                    KafkaRecord(record.topic, record.partition, record.offset, record.timestamp,
                                record.key, record.value),
                    seconds,
                )
            if not records and restriction.stop != UNBOUNDED and reader.position() >= restriction.stop:
                finished = True
        if claimed:
            OUTAGES.recovered("kafka")
            # Idleness counts from the next bundle's start: the stages below (read-ahead's finish_bundle)
            # are still at work after this generator ends. The mark goes with the residual.
            tracker.current_restriction().last_activity = ACTIVE_UNTIL_NEXT_BUNDLE

        _report_lag(reader)
        # Runs once the runner has committed this bundle's work: the writes are done. Registered
        # even when there is nothing to commit: Prism asks every SDF bundle to finalize, and the
        # SDK reports an error for a bundle that registered no finalizer.
        if last_offset is not None and self.group_id:
            bundle_finalizer.register(lambda tp=tp, offset=last_offset + 1: self._commit(tp, offset))
        else:
            bundle_finalizer.register(lambda: None)
        if not claim_refused:  # a refused claim has ended the restriction already
            self._end_or_defer(tracker, reader, restriction.start, last_offset, finished)

    def _end_or_defer(self, tracker, reader: PartitionReader, start: int, last_offset: int | None,
                      finished: bool) -> None:
        """End the restriction (stop offset reached, or idle past ``until_idle_s``) or come back later."""
        tp = reader.tp
        stop = tracker.current_restriction().stop
        idle = time.time() - getattr(tracker.current_restriction(), "last_activity", time.time())
        last = last_offset if last_offset is not None else start - 1
        if finished or (stop != UNBOUNDED and last + 1 >= stop):
            tracker.try_claim(stop)  # claiming the end marks the restriction done
            return
        if last_offset is None and not self._broker_answers(reader):
            # Nothing came because the broker is away, not because nothing was sent: that is no
            # idleness (an outage must not end a run that ends when idle); it counts from recovery.
            tracker.current_restriction().last_activity = time.time()
        elif self.until_idle_s is not None and idle >= self.until_idle_s:
            log.info("partition %s idle for %.1f s: ending the read", tp, idle)
            tracker.try_claim(stop)
            return
        tracker.defer_remainder(Duration(seconds=0.2))


def _report_lag(reader: PartitionReader) -> None:
    lag = reader.lag()  # known after a fetch; None before the first one
    if lag is not None:
        CONSUMER_LAG.labels(topic=reader.tp.topic, partition=str(reader.tp.partition)).set(lag)


def _plan(_impulse: bytes, *args: Any) -> list[PartitionRead]:
    return plan_partition_reads(*args)


class ReadFromKafka(beam.PTransform):
    """Read a topic as ``KafkaRecord``s, one splittable reader per partition."""

    def __init__(self, client_options: dict[str, Any], topic: str, group_id: str | None,
                 start_time_ms: int | None = None, stop_time_ms: int | None = None,
                 until_idle_s: float | None = None, max_records_per_bundle: int = 100,
                 bundle_read_s: float = 2.0):
        super().__init__()
        self.max_records_per_bundle = max_records_per_bundle
        self.bundle_read_s = bundle_read_s
        self.client_options = client_options
        self.topic = topic
        self.group_id = group_id
        self.start_time_ms = start_time_ms
        self.stop_time_ms = stop_time_ms
        self.until_idle_s = until_idle_s

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # Planned when the pipeline starts (not when it is built), so a restart resumes
        # from the offsets committed by then.
        return (
            pbegin
            | "Start" >> beam.Impulse()
            | "PlanPartitions" >> beam.FlatMap(
                _plan, self.client_options, self.topic, self.group_id, self.start_time_ms, self.stop_time_ms)
            | "ReadPartitions" >> beam.ParDo(_ReadPartition(self.client_options, self.group_id, self.until_idle_s,
                                                            poll_s=self.bundle_read_s,
                                                            max_records=self.max_records_per_bundle))
        )
