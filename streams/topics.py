"""The Kafka topics of mimamori, created from configuration (idempotent)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from mimamori.core.config import Settings, TopicConfig

# Marks a replay's own consumer group (streams.replay.replay_group); the exporter labels its
# lag role="replay", and alerts look at live groups only.
REPLAY_GROUP_MARK = ".replay."


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**settings.kafka.client_options(), client_id="mimamori-admin")


def ensure_topics(settings: Settings, topics: list[TopicConfig] | None = None) -> None:
    """Create missing topics; grow the partition count of existing ones up to the configured one."""
    topics = topics if topics is not None else settings.kafka.topics.all()
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(t.name, t.partitions, 1, topic_configs={"retention.ms": str(t.retention_ms)})
            for t in topics if t.name not in existing
        ]
        if missing:
            # Created meanwhile by another process: that is what we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
        present = [t for t in topics if t.name in existing]
        if present:
            described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([t.name for t in present])}
            grow = {t.name: NewPartitions(t.partitions) for t in present if described.get(t.name, 0) < t.partitions}
            if grow:
                admin.create_partitions(grow)
    finally:
        admin.close()


def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record now on ``topic``, from the beginning to the current end (no group, no commit)."""
    reader = GroupReader(settings, topic, None, from_start=True)
    try:
        return reader.records()
    finally:
        reader.close()


class GroupReader:
    """The records of ``topic`` that consumer group ``group`` has not committed yet, up to the
    current end; ``commit()`` marks them done. ``from_start`` reads from the beginning anyway
    (and is what a reader without a group does).

    For one-off jobs over a topic (re-driving dead letters) that must not repeat their work.
    """

    def __init__(self, settings: Settings, topic: str, group: str | None, from_start: bool = False):
        self.consumer = KafkaConsumer(**settings.kafka.client_options(), group_id=group, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic) or ()]
        self.consumer.assign(tps)
        self.end = self.consumer.end_offsets(tps)
        for tp in tps:
            committed = None if from_start or group is None else self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def records(self) -> list[ConsumerRecord]:
        return _read_to(self.consumer, self.end)

    def commit(self) -> None:
        self.consumer.commit({tp: OffsetAndMetadata(end, None, -1) for tp, end in self.end.items()})

    def close(self) -> None:
        self.consumer.close()


def _read_to(consumer: KafkaConsumer, end: dict[TopicPartition, int]) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    while any(consumer.position(tp) < end[tp] for tp in end):
        for batch in consumer.poll(timeout_ms=1000).values():
            records += [record for record in batch if record.offset < end[TopicPartition(record.topic,
                                                                                         record.partition)]]
    return records
