"""The Grafana dashboards, defined once here and written as JSON to docker/grafana/dashboards/.

    .venv/bin/python docker/grafana/dashboards.py     # rewrite the JSON files

A test checks that the committed JSON is what this file makes, and another runs every
panel's query against a live Prometheus after a pipeline run. Panels follow Prometheus
conventions: ``rate()`` or ``increase()`` over counters, ``histogram_quantile()`` over
histogram buckets, gauges as they are. A panel whose description starts with ``[gpu]``
only has data on GPU workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEDIA_TOPIC = 'topic=~"(.*[.])?media[.]scraped"'


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    unit: str = "short"
    legend: str = ""
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]


def p95(metric: str, by: str, selector: str = "", window: str = "5m") -> str:
    return f"histogram_quantile(0.95, sum by (le, {by}) (rate({metric}_bucket{selector}[{window}])))"


DASHBOARDS = (
    Dashboard("mimamori-ingestion", "mimamori: ingestion overview", (
        Panel("Media in", f"sum(rate(mimamori_kafka_topic_end_offset{{{MEDIA_TOPIC}}}[5m]))", "ops",
              description="Messages published to media.scraped per second"),
        Panel("Faces indexed", "sum by (model) (rate(mimamori_faces_indexed_total[5m]))", "ops", "{{model}}"),
        Panel("Media by outcome", "sum by (outcome) (rate(mimamori_media_total[5m]))", "ops", "{{outcome}}",
              "indexed, no_face, or a sighting of media already indexed"),
        Panel("Throughput per stage", "sum by (stage) (rate(mimamori_stage_elements_total[5m]))", "ops", "{{stage}}"),
        Panel("Stage latency (p95)", p95("mimamori_stage_duration_seconds", "stage"), "s", "{{stage}}"),
        Panel("Consumer lag", 'sum by (group, topic) (mimamori_kafka_group_lag_messages{role="live"})', "short",
              "{{group}} / {{topic}}", "Messages not yet committed by the live consumer groups (replays left out: "
              "their groups stop at the end of their range)"),
        Panel("Dead letters by reason (1 h)", "sum by (reason) (increase(mimamori_dead_letters_total[1h]))", "short",
              "{{reason}}"),
    )),
    Dashboard("mimamori-models", "mimamori: models and GPU", (
        Panel("Embedding batch size (p95)", p95("mimamori_batch_size", "stage", '{stage="embed"}'), "short",
              "{{stage}}"),
        Panel("Inference latency (p95)",
              p95("mimamori_stage_duration_seconds", "stage", '{stage=~"detect|embed"}'), "s", "{{stage}}",
              "detect: one media item (all its frames); embed: one batch of faces (see the batch size)"),
        Panel("Faces per media item (p95)",
              "histogram_quantile(0.95, sum by (le) (rate(mimamori_faces_per_media_bucket[5m])))", "short"),
        Panel("Workers by device", "sum by (device) (mimamori_worker_device_info)", "short", "{{device}}"),
        Panel("GPU utilisation", "avg by (device) (mimamori_gpu_utilization_ratio)", "percentunit", "{{device}}",
              "[gpu] Utilisation of each GPU worker's device (NVML)"),
    )),
    Dashboard("mimamori-milvus", "mimamori: Milvus", (
        Panel("Write latency (p95)", p95("mimamori_milvus_write_duration_seconds", "collection"), "s",
              "{{collection}}"),
        Panel("Upserts per second", "sum by (collection) (rate(mimamori_milvus_write_duration_seconds_count[5m]))",
              "ops", "{{collection}}"),
        Panel("Write errors (1 h, retried)", "sum by (collection) (increase(mimamori_milvus_write_errors_total[1h]))",
              "short", "{{collection}}"),
        Panel("Entities", "sum by (collection) (mimamori_milvus_entities)", "short", "{{collection}}"),
    )),
    Dashboard("mimamori-watchlist", "mimamori: watchlist", (
        Panel("Matches per day by platform", "sum by (platform) (increase(mimamori_watchlist_matches_total[1d]))",
              "short", "{{platform}}"),
        Panel("Matches waiting for review", "max(mimamori_watchlist_pending_matches)", "short"),
        Panel("Oldest match waiting", "max(mimamori_watchlist_oldest_pending_match_age_seconds)", "s"),
        Panel("Time to review (median)",
              "histogram_quantile(0.5, sum by (le) (rate(mimamori_watchlist_review_delay_seconds_bucket[1d])))", "s"),
        Panel("API requests", "sum by (route, status) (rate(mimamori_api_requests_total[5m]))", "reqps",
              "{{route}} {{status}}"),
    )),
    # Issue 19 (T2): takedowns (states and overdue work from the exporter) and their re-checks (the
    # re-check service, whose outcome and fetch series exist at 0 from its start).
    Dashboard("mimamori-takedowns", "mimamori: takedowns", (
        Panel("Takedowns by state", "sum by (state) (mimamori_takedowns)", "short", "{{state}}",
              "Every URL's takedown by state; reappeared and draft need staff"),
        Panel("Overdue and due escalations",
              "max(mimamori_takedowns_overdue) or max(mimamori_takedowns_escalation_due)", "short",
              description="Open takedowns whose next escalation step was due before today (or is due by today's end)"),
        Panel("Re-check outcomes per day", "sum by (outcome) (increase(mimamori_recheck_outcomes_total[1d]))",
              "short", "{{outcome}}", "gone, still_up, changed, dns_failure, error"),
        Panel("Reappearances per day", "sum(increase(mimamori_takedown_reappearances_total[1d]))", "short",
              description="Removed URLs found serving the content again"),
        Panel("Re-check fetch time (p95)", p95("mimamori_recheck_fetch_duration_seconds", "kind"), "s", "{{kind}}",
              "One fetch (page or image), redirects included; capped at rechecks.timeout_s"),
        Panel("Re-checks late", "max(mimamori_takedown_rechecks_behind)", "short",
              description="Takedowns whose re-check is over 6 hours late (the re-check service down or behind)"),
    )),
)


def to_grafana(dashboard: Dashboard) -> dict:
    panels = []
    for i, panel in enumerate(dashboard.panels):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": panel.title,
            "description": panel.description,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": "A", "expr": panel.expr, "legendFormat": panel.legend,
                         "datasource": {"type": "prometheus", "uid": "prometheus"}}],
        })
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "tags": ["mimamori"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def write_all() -> list[Path]:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    paths = []
    for dashboard in DASHBOARDS:
        path = out / f"{dashboard.uid}.json"
        path.write_text(json.dumps(to_grafana(dashboard), indent=2) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all():
        print(written)
