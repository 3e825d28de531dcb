"""One Kafka producer per process and configuration: it is thread-safe and expensive to make."""

from __future__ import annotations

import threading

from kafka import KafkaProducer

from mimamori.core.config import KafkaConfig

_lock = threading.Lock()
_producers: dict[str, KafkaProducer] = {}


def shared_producer(config: KafkaConfig) -> KafkaProducer:
    key = config.model_dump_json()
    with _lock:
        if key not in _producers:
            # acks=all and idempotence: a retried send is never written twice by the broker.
            _producers[key] = KafkaProducer(**config.client_options(), acks="all", enable_idempotence=True,
                                            linger_ms=20, max_request_size=2 * 1024 * 1024)
        return _producers[key]


def close_all(timeout_s: float = 5.0) -> None:
    """Flush and close every shared producer (before the brokers go away, e.g. in tests)."""
    with _lock:
        for producer in _producers.values():
            producer.close(timeout=timeout_s)
        _producers.clear()
