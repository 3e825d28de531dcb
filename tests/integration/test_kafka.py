"""Kafka on the local stack: consumer groups, committed offsets, time-based offsets."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from mimamori.core.config import TopicConfig
from mimamori.streams.topics import admin_client, ensure_topics
from tests.conftest import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(stack, settings):
    name = unique("test.kafka")
    ensure_topics(settings, [TopicConfig(name=name, partitions=3)])
    yield name
    admin = admin_client(settings)
    admin.delete_topics([name])
    admin.close()


def _producer(settings) -> KafkaProducer:
    return KafkaProducer(**settings.kafka.client_options(), acks="all")


def _consumer(settings, group: str, topic: str) -> KafkaConsumer:
    return KafkaConsumer(topic, **settings.kafka.client_options(), group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)


def _drain(consumer: KafkaConsumer, expected: int) -> list:
    records, deadline = [], time.monotonic() + 30
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def test_ensure_topics_creates_then_grows_partitions(stack, settings):
    name = unique("test.topics")
    ensure_topics(settings, [TopicConfig(name=name, partitions=2, retention_ms=3_600_000)])
    ensure_topics(settings, [TopicConfig(name=name, partitions=2)])  # idempotent
    ensure_topics(settings, [TopicConfig(name=name, partitions=4)])
    admin = admin_client(settings)
    try:
        described = admin.describe_topics([name])[0]
        assert len(described["partitions"]) == 4
        from kafka.admin import ConfigResource, ConfigResourceType

        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        assert configs["topic"][name]["retention.ms"]["value"] == "3600000"
    finally:
        admin.delete_topics([name])
        admin.close()


def test_a_group_resumes_from_its_committed_offset(settings, topic):
    producer = _producer(settings)
    for i in range(30):
        producer.send(topic, key=f"media-{i}".encode(), value=f"first-{i}".encode())
    producer.flush()

    group = unique("test-group")
    first = _consumer(settings, group, topic)
    seen = _drain(first, 30)
    assert sorted(r.value.decode() for r in seen) == sorted(f"first-{i}" for i in range(30))
    first.commit()
    first.close()

    for i in range(10):
        producer.send(topic, key=f"media-{i}".encode(), value=f"second-{i}".encode())
    producer.flush()
    producer.close()

    second = _consumer(settings, group, topic)
    resumed = _drain(second, 10)
    second.close()
    assert sorted(r.value.decode() for r in resumed) == sorted(f"second-{i}" for i in range(10))


def test_offsets_for_times_finds_the_first_offset_at_or_after_a_time(settings, topic):
    producer = _producer(settings)
    base = int(time.time() * 1000) - 60_000
    partition = 0
    for i in range(5):  # explicit timestamps, one second apart, all on one partition
        producer.send(topic, value=f"m{i}".encode(), partition=partition, timestamp_ms=base + i * 1000)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(**settings.kafka.client_options())
    tp = TopicPartition(topic, partition)
    at = consumer.offsets_for_times({tp: base + 2000})[tp]
    between = consumer.offsets_for_times({tp: base + 2500})[tp]
    after_all = consumer.offsets_for_times({tp: base + 10_000})[tp]
    consumer.close()
    assert (at.offset, at.timestamp) == (2, base + 2000)
    assert (between.offset, between.timestamp) == (3, base + 3000)
    assert after_all is None
