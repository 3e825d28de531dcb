"""Retrying calls to the services (Milvus, MinIO, Kafka, the case database) when they, not the input, fail."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def retryable_errors() -> tuple[type[BaseException], ...]:
    """Errors of the infrastructure (connection refused, timeouts), not of the input."""
    import urllib3
    from kafka.errors import KafkaError
    from pymilvus.exceptions import MilvusException
    from sqlalchemy.exc import OperationalError  # the case database busy or unreachable

    return (ConnectionError, TimeoutError, urllib3.exceptions.HTTPError, MilvusException, KafkaError,
            OperationalError)


def input_errors() -> tuple[type[BaseException], ...]:
    """Milvus errors that say the request itself is wrong (a bad row): retrying cannot help."""
    from pymilvus.exceptions import DataNotMatchException, DataTypeNotMatchException, ParamError

    return (ParamError, DataNotMatchException, DataTypeNotMatchException)


def with_retries(action: Callable[[], T], what: str, attempts: int = 5, first_delay_s: float = 0.5) -> T:
    """Retry an infrastructure call with exponential backoff; the last failure propagates."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except retryable_errors() as error:
            if attempt == attempts or isinstance(error, input_errors()):
                raise
            log.warning("%s failed (attempt %d/%d): %s; retrying in %.1f s", what, attempt, attempts, error, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
