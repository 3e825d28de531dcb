"""Run totals that both Prometheus and Beam see: media by outcome, faces, dead letters by reason.

Prometheus counters feed the live dashboards but live in each worker process. A bounded run
(a replay) needs its own totals wherever its workers ran (in-process on Prism, in a Flink
task manager's worker pool, on Dataflow), so each count also goes to a Beam counter, and the
runner adds those up for the job (``run_totals``).
"""

from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult

from mimamori.core import metrics

NAMESPACE = "mimamori"


def count_media(outcome: str) -> None:
    metrics.MEDIA.labels(outcome=outcome).inc()
    Metrics.counter(NAMESPACE, f"media.{outcome}").inc()


def count_faces(model: str, count: int) -> None:
    metrics.FACES_INDEXED.labels(model=model).inc(count)
    Metrics.counter(NAMESPACE, "faces").inc(count)


def count_dead_letter(reason: str, stage: str) -> None:
    metrics.DEAD_LETTERS.labels(reason=reason, stage=stage).inc()
    Metrics.counter(NAMESPACE, f"dead_letters.{reason}").inc()


def run_totals(result: PipelineResult) -> dict[str, int]:
    """The job's totals by name (``media.<outcome>``, ``faces``, ``dead_letters.<reason>``)."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals
