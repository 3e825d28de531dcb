"""The clients a worker process shares among its copies of the Kafka source, without Kafka."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import TopicPartition

from mimamori.streams.kafka_clients import SharedClients


@dataclass
class Record:
    offset: int


@dataclass
class FakeConsumer:
    """Hands out offsets from where it was sought; records the calls the clients make."""

    options: dict
    calls: list = field(default_factory=list)
    closed: bool = False
    position_: int = 0

    def assign(self, tps):
        self.calls.append(("assign", tuple(tps)))

    def seek(self, tp, offset):
        self.calls.append(("seek", offset))
        self.position_ = offset

    def poll(self, timeout_ms, max_records):
        records = [Record(self.position_ + i) for i in range(max_records)]
        self.position_ += max_records
        return {self.tp: records}

    def commit(self, offsets):
        self.calls.append(("commit", {tp: meta.offset for tp, meta in offsets.items()}))

    def close(self):
        self.closed = True


def factory(made: list):
    def make(**options):
        consumer = FakeConsumer(options)
        consumer.tp = TopicPartition("t", 0)
        made.append(consumer)
        return consumer
    return make


def test_every_copy_of_the_source_in_a_process_shares_one_reader_per_partition_and_one_committer():
    made: list[FakeConsumer] = []
    make = factory(made)
    first = SharedClients.acquire({"bootstrap_servers": ["a:1"]}, "live", make)
    second = SharedClients.acquire({"bootstrap_servers": ["a:1"]}, "live", make)  # Beam's second copy
    assert first is second
    tp = TopicPartition("t", 0)
    assert first.reader(tp, 10) is second.reader(tp, 10)
    first.commit(tp, 5)
    second.commit(tp, 7)
    readers = [c for c in made if "group_id" not in c.options]
    committers = [c for c in made if "group_id" in c.options]
    assert len(readers) == 1 and len(committers) == 1
    assert committers[0].calls == [("commit", {tp: 5}), ("commit", {tp: 7})]
    assert committers[0].options["group_id"] == "live" and committers[0].options["enable_auto_commit"] is False

    first.release()
    assert not any(c.closed for c in made)  # a copy is still using them
    second.release()
    assert all(c.closed for c in made)
    # A finalizer that runs after the teardown makes a committer again.
    second.commit(tp, 9)
    assert len(made) == 3 and made[-1].calls == [("commit", {tp: 9})]


def test_a_read_that_continues_keeps_the_prefetch_and_one_that_starts_elsewhere_seeks():
    made: list[FakeConsumer] = []
    clients = SharedClients.acquire({"bootstrap_servers": ["b:1"]}, None, factory(made))
    tp = TopicPartition("t", 0)
    reader = clients.reader(tp, 10)
    assert [r.offset for r in reader.poll(100, timeout_ms=1, max_records=3)] == [100, 101, 102]
    assert [r.offset for r in reader.poll(103, timeout_ms=1, max_records=2)] == [103, 104]  # no seek
    assert [r.offset for r in reader.poll(101, timeout_ms=1, max_records=1)] == [101]  # a retried bundle
    assert made[0].calls == [("assign", (tp,)), ("seek", 100), ("seek", 101)]
    clients.release()


def test_clients_of_other_clusters_or_groups_are_not_shared():
    made: list[FakeConsumer] = []
    make = factory(made)
    a = SharedClients.acquire({"bootstrap_servers": ["c:1"]}, "g1", make)
    b = SharedClients.acquire({"bootstrap_servers": ["c:1"]}, "g2", make)
    c = SharedClients.acquire({"bootstrap_servers": ["d:1"]}, "g1", make)
    assert len({id(a), id(b), id(c)}) == 3
    for clients in (a, b, c):
        clients.release()

