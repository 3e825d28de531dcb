"""A stage's duration and its thread's CPU time (mimamori.core.metrics.stage_timer): waiting is told from work."""

from __future__ import annotations

import time

from mimamori.core import metrics


def _cpu(stage: str) -> float:
    return metrics.STAGE_CPU_SECONDS.labels(stage=stage)._value.get()


def _seconds(stage: str) -> float:
    [total] = [s.value for s in metrics.STAGE_SECONDS.collect()[0].samples
               if s.name.endswith("_sum") and s.labels["stage"] == stage]
    return total


def test_waiting_counts_in_the_duration_only_and_work_in_both() -> None:
    with metrics.stage_timer("test-wait"):
        time.sleep(0.2)
    assert _seconds("test-wait") >= 0.2 and _cpu("test-wait") < 0.05
    with metrics.stage_timer("test-work"):
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:
            pass
    assert _cpu("test-work") >= 0.2 and _seconds("test-work") >= _cpu("test-work") - 0.01


def test_a_failing_stage_is_still_timed_and_its_error_passes_through() -> None:
    import pytest

    with pytest.raises(ValueError, match="bad input"), metrics.stage_timer("test-fail"):
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
        raise ValueError("bad input")
    assert _seconds("test-fail") >= 0.05 and _cpu("test-fail") >= 0.05
