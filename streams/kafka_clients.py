"""The Kafka clients that one worker process shares among its copies of the source.

Beam runs a fused stage in a *bundle processor*, with DoFn instances of its own, and makes
another one whenever two bundles of the stage run at once (six partitions are six reads that
can). It keeps the extra copy for as long as bundles keep coming. Clients made per DoFn
instance would make the process's connections a function of its peak concurrency: the
24/7 soak saw the worker gain a reader and a committer (8 sockets, 2 epoll descriptors) at
whatever minute the load first made two bundles overlap. Made per process, they are a function
of what the process reads: one reader per partition (a partition is read by one bundle at a
time, since its restriction never splits) and one committer per consumer group
(``mimamori.core.process_shared``).

A KafkaConsumer is not thread-safe, and bundles run on the SDK harness's threads: each
client is used only under its own lock, and never across a ``yield``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from mimamori.core.process_shared import ProcessShared

ConsumerFactory = Callable[..., Any]  # KafkaConsumer's signature


class PartitionReader:
    """One partition's consumer: assigned once, and sought only when a read starts elsewhere.

    A read that continues where the last one ended keeps the records the consumer has
    prefetched; one that starts elsewhere (a retried bundle, a replay) seeks first.
    """

    def __init__(self, consumer: Any, tp: TopicPartition):
        self.consumer = consumer
        self.tp = tp
        self.lock = threading.Lock()
        self.next_offset: int | None = None
        consumer.assign([tp])

    def poll(self, from_offset: int, timeout_ms: int, max_records: int) -> list[ConsumerRecord]:
        """Records from ``from_offset`` on (none if nothing came within ``timeout_ms``)."""
        with self.lock:
            if self.next_offset != from_offset:
                self.consumer.seek(self.tp, from_offset)
                self.next_offset = from_offset
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records).get(self.tp, [])
            if records:
                self.next_offset = records[-1].offset + 1
            return records

    def position(self) -> int:
        with self.lock:
            return self.consumer.position(self.tp)

    def lag(self) -> int | None:
        """High-water mark minus position; None before the first fetch has told the high-water mark."""
        with self.lock:
            highwater = self.consumer.highwater(self.tp)
            return None if highwater is None else max(0, highwater - self.consumer.position(self.tp))

    def end_offset(self, timeout_ms: int) -> int:
        """Asks the broker (raises when it does not answer in time)."""
        with self.lock:
            return self.consumer.end_offsets([self.tp], timeout_ms=timeout_ms)[self.tp]

    def close(self) -> None:
        with self.lock:
            self.consumer.close()


class SharedClients:
    """The readers and committer of one (cluster, group) in this process; see the module's doc.

    ``acquire`` in a DoFn's ``setup`` and ``release`` in its ``teardown``: the clients are
    closed when the last user releases them. A finalizer can run after its DoFn's teardown:
    its commit makes a committer again.
    """

    def __init__(self, client_options: dict[str, Any], group_id: str | None, factory: ConsumerFactory):
        self.client_options = client_options
        self.group_id = group_id
        self.factory = factory
        self.key = _key(client_options, group_id, factory)
        self._lock = threading.Lock()  # guards the map of readers, not the clients
        self._readers: dict[TopicPartition, PartitionReader] = {}
        self._committer: Any = None
        self._commit_lock = threading.Lock()

    @staticmethod
    def acquire(client_options: dict[str, Any], group_id: str | None,
                factory: ConsumerFactory = KafkaConsumer) -> SharedClients:
        return _HELD.acquire(_key(client_options, group_id, factory),
                             lambda: SharedClients(client_options, group_id, factory))

    def release(self) -> None:
        _HELD.release(self.key)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()
        with self._commit_lock:  # never under a running commit
            if self._committer is not None:
                self._committer.close()
                self._committer = None

    def reader(self, tp: TopicPartition, max_poll_records: int) -> PartitionReader:
        """The partition's reader, made on first use (this bootstraps: it raises while the broker is away)."""
        with self._lock:
            reader = self._readers.get(tp)
        if reader is not None:
            return reader
        # No group here: partitions are assigned by the runner, not by Kafka's rebalancing.
        made = PartitionReader(self.factory(**self.client_options, enable_auto_commit=False,
                                            max_poll_records=max_poll_records), tp)
        with self._lock:
            reader = self._readers.setdefault(tp, made)
        if reader is not made:  # another thread made one first
            made.close()
        return reader

    def commit(self, tp: TopicPartition, next_offset: int) -> None:
        """Commit the group's offset of ``tp`` (the committer is made on first use)."""
        with self._commit_lock:
            if self._committer is None:
                self._committer = self.factory(**self.client_options, group_id=self.group_id,
                                               enable_auto_commit=False)
            self._committer.commit({tp: OffsetAndMetadata(next_offset, "", -1)})


def _key(client_options: dict[str, Any], group_id: str | None, factory: ConsumerFactory) -> tuple:
    return repr(sorted(client_options.items())), group_id, factory


_HELD: ProcessShared[SharedClients] = ProcessShared(SharedClients.close)
