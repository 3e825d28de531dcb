"""The Kafka source's restriction handling, without Kafka."""

import time

from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from kafka import TopicPartition

from mimamori.streams.kafka_source import UNBOUNDED, PartitionRead, _OffsetRangeProvider, _ReadPartition


def test_a_partition_read_checkpoints_but_never_splits():

    provider = _OffsetRangeProvider()
    tracker = provider.create_tracker(provider.initial_restriction(PartitionRead("t", 0, 10)))
    assert tracker.try_claim(10) and tracker.try_claim(11)
    assert tracker.try_split(0.5) is None  # no second reader of the partition
    primary, residual = tracker.try_split(0)  # a checkpoint: the rest, later, in order
    assert (primary.start, primary.stop) == (10, 12)
    assert (residual.start, residual.stop) == (12, UNBOUNDED)
    assert residual.last_activity == primary.last_activity


class _Record:
    def __init__(self, offset: int):
        self.topic, self.partition, self.offset, self.timestamp = "t", 0, offset, 1_000 * offset
        self.key, self.value = b"k", b"{}"


class _Reader:
    """A partition reader with records at offsets 0 and 1, then nothing."""

    tp = TopicPartition("t", 0)

    def poll(self, from_offset: int, timeout_ms: int, max_records: int):
        return [_Record(n) for n in range(from_offset, 2)]

    def position(self) -> int:
        return 2

    def end_offset(self, timeout_ms: int) -> int:
        return 2

    def lag(self) -> int:
        return 0


class _Clients:
    def reader(self, tp, max_records):
        return _Reader()


class _Finalizer:
    def register(self, callback) -> None:
        pass


def _bundle(source: _ReadPartition, restriction) -> tuple[list, ThreadsafeRestrictionTracker]:
    tracker = ThreadsafeRestrictionTracker(_OffsetRangeProvider().create_tracker(restriction))
    records = list(source.process(PartitionRead("t", 0, 0), _Finalizer(), tracker=RestrictionTrackerView(tracker),
                                  watermark=ManualWatermarkEstimator(None)))
    return records, tracker


def test_idleness_counts_from_the_next_bundle_not_from_the_end_of_the_read():
    """The stages below may still be handling a bundle's last records after its read has ended
    (read-ahead passes them on in finish_bundle): that time is not idleness."""
    source = _ReadPartition({}, None, until_idle_s=0.5, poll_s=0.05)
    source._clients = _Clients()
    first, tracker = _bundle(source, _OffsetRangeProvider().initial_restriction(PartitionRead("t", 0, 0)))
    assert [r.value.offset for r in first] == [0, 1]
    residual, _delay = tracker.deferred_status()
    time.sleep(0.6)  # the bundle's records still being processed downstream, longer than until_idle_s
    empty, tracker = _bundle(source, residual)
    assert empty == [] and not tracker.check_done()  # not ended: the partition was idle for 0.05 s only
    residual, _delay = tracker.deferred_status()
    time.sleep(0.6)  # now nothing came for longer than until_idle_s
    empty, tracker = _bundle(source, residual)
    assert empty == [] and tracker.deferred_status() is None  # the read ended
