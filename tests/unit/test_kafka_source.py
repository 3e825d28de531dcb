"""The Kafka source's restriction handling, without Kafka."""

from mimamori.streams.kafka_source import UNBOUNDED, PartitionRead, _OffsetRangeProvider


def test_a_partition_read_checkpoints_but_never_splits():

    provider = _OffsetRangeProvider()
    tracker = provider.create_tracker(provider.initial_restriction(PartitionRead("t", 0, 10)))
    assert tracker.try_claim(10) and tracker.try_claim(11)
    assert tracker.try_split(0.5) is None  # no second reader of the partition
    primary, residual = tracker.try_split(0)  # a checkpoint: the rest, later, in order
    assert (primary.start, primary.stop) == (10, 12)
    assert (residual.start, residual.stop) == (12, UNBOUNDED)
    assert residual.last_activity == primary.last_activity
