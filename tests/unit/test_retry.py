"""Outages are waited for, said once when they begin and once when they end, counted and timed."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import REGISTRY

from mimamori.core import retry
from mimamori.core.retry import OUTAGES, is_outage, store_of, with_retries


def retries(store: str, operation: str) -> float:
    return REGISTRY.get_sample_value("mimamori_store_retries_total", {"store": store, "operation": operation}) or 0.0


def flaky(failures: int, error: Exception):
    calls = {"n": 0}

    def action() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error
        return "done"

    return action, calls


def test_an_outage_is_waited_for_announced_once_counted_and_its_recovery_said(caplog):
    action, calls = flaky(4, ConnectionRefusedError("connection refused"))
    before = retries("milvus", "upsert-test")
    with caplog.at_level(logging.WARNING, logger="mimamori.outages"):
        assert with_retries(action, "upsert of 3 rows", store="milvus", operation="upsert-test",
                            first_delay_s=0.01, max_delay_s=0.02) == "done"
    assert calls["n"] == 5
    assert retries("milvus", "upsert-test") - before == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("waiting for milvus since ")]) == 1, messages
    assert "upsert of 3 rows failed: ConnectionRefusedError: connection refused" in messages[0]
    assert len([m for m in messages if m.startswith("milvus recovered after ")]) == 1, messages
    assert OUTAGES.unreachable_for("milvus") == 0.0
    assert any(line.startswith("milvus was unreachable for ") and "recovered" in line for line in OUTAGES.summary())


def test_while_the_outage_lasts_its_length_is_a_gauge(caplog):
    seen = []

    def action() -> str:
        seen.append(REGISTRY.get_sample_value("mimamori_store_unreachable_seconds", {"store": "minio"}))
        if len(seen) < 3:
            raise TimeoutError("read timed out")
        return "ok"

    with_retries(action, "read of raw/x", store="minio", operation="get", first_delay_s=0.05, max_delay_s=0.05)
    assert seen[0] == 0.0 and 0.0 < seen[1] < seen[2]
    assert REGISTRY.get_sample_value("mimamori_store_unreachable_seconds", {"store": "minio"}) == 0.0


def test_bad_input_is_not_retried_and_patience_ends():
    from pymilvus.exceptions import ParamError

    action, calls = flaky(10, ParamError(message="bad row"))
    with pytest.raises(ParamError):
        with_retries(action, "upsert", store="milvus", first_delay_s=0.01)
    assert calls["n"] == 1
    action, calls = flaky(1000, ConnectionError("down"))
    began = time.monotonic()
    with pytest.raises(ConnectionError):
        with_retries(action, "upsert", store="kafka", patience_s=0.2, first_delay_s=0.02, max_delay_s=0.05)
    assert time.monotonic() - began < 2 and calls["n"] > 2
    OUTAGES.recovered("kafka")  # leave no outage behind for the other tests


def test_which_errors_are_outages_and_of_which_store():
    from minio.error import InvalidResponseError, ServerError
    from pymilvus.exceptions import MilvusException
    from sqlalchemy.exc import OperationalError

    assert is_outage(ServerError("server failed with HTTP status code 503", 503))
    assert is_outage(InvalidResponseError(503, "text/html", "starting"))
    assert not is_outage(InvalidResponseError(403, "text/html", "denied"))
    assert not is_outage(ValueError("a bad photo"))
    assert store_of(MilvusException(message="gone")) == "milvus"
    assert store_of(OperationalError("select", {}, Exception("database is locked"))) == "database"


def test_a_call_that_hangs_is_reported_as_a_wait_and_its_answer_as_recovery(caplog, monkeypatch):
    monkeypatch.setattr(retry, "SLOW_CALL_S", 0.2)
    with caplog.at_level(logging.WARNING, logger="mimamori.outages"):
        with_retries(lambda: time.sleep(1.6), "query of media", store="database", operation="query")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("waiting for database since ") and "no answer for" in m for m in messages), messages
    assert any(m.startswith("database recovered after ") for m in messages), messages
