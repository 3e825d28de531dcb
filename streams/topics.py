"""The Kafka topics of mimamori, created from configuration (idempotent)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from mimamori.config import Settings, TopicConfig


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
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += batch
        return records
    finally:
        consumer.close()
