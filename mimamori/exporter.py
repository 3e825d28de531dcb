"""mimamori's exporter of state for Prometheus: what no single worker knows.

- consumer lag of each consumer group (labelled live or replay), per partition, from the group's committed offsets
  and the partitions' end offsets (and the end offsets themselves: their rate is media in);
- entities per Milvus collection of this deployment (faces, media, sightings, enrolled);
- matches waiting for review, and how long the oldest has waited;
- takedowns by state, overdue escalations, and re-checks that have fallen behind (issue 19).

The values are refreshed in the background every ``stack.monitoring.exporter_interval_s`` (a
count of every Milvus collection takes seconds), and a scrape returns the latest. A source
that cannot be reached keeps its last values out and is counted in
``mimamori_exporter_errors_total``, so the others keep reporting.

Run: ``python -m mimamori.exporter`` (the local stack starts it).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mimamori.core.config import Settings, load_settings
from mimamori.core.scrape_targets import forget_dead_targets
from mimamori.streams.topics import REPLAY_GROUP_MARK

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)
# A re-check later than this counts as behind (the re-check service polls every few minutes).
RECHECK_GRACE = dt.timedelta(hours=6)


def group_role(group: str) -> str:
    """``replay`` for a replay's own consumer group (streams.replay.replay_group), else ``live``.

    A replay's group stops at the end of its range and then falls behind by design, so alerts
    and the lag panel look at live groups only.
    """
    return "replay" if REPLAY_GROUP_MARK in group else "live"


class StateCollector(Collector):
    def __init__(self, settings: Settings, errors: Counter):
        self.settings = settings
        self.errors = errors
        self._consumer = None
        self._admin = None
        self._sessions = None
        self._latest: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._latest

    def refresh(self) -> None:
        families: list[GaugeMetricFamily] = []
        for source, read in (("kafka", self._kafka), ("milvus", self._milvus), ("database", self._database),
                             ("takedowns", self._takedowns)):
            try:
                families += list(read())
            except Exception as error:
                log.warning("exporter: %s unreachable: %s", source, error)
                self.errors.labels(source=source).inc()
        self._latest = families  # swapped whole: a scrape sees one refresh, never half of one

    def _kafka(self) -> Iterator[GaugeMetricFamily]:
        """Lag of every consumer group on every media topic (the live group, replays, test runs)."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(**self.settings.kafka.client_options(), enable_auto_commit=False)
            self._admin = KafkaAdminClient(**self.settings.kafka.client_options())
        media_topic = self.settings.kafka.topics.media_scraped.name
        lag = GaugeMetricFamily("mimamori_kafka_group_lag_messages",
                                "Messages of a media topic not yet committed by a consumer group "
                                "(role: live, or replay for a replay's own group)",
                                labels=["group", "role", "topic", "partition"])
        end = GaugeMetricFamily("mimamori_kafka_topic_end_offset", "End offset of each partition of mimamori's topics",
                                labels=["topic", "partition"])
        names = {t.name for t in self.settings.kafka.topics.all()}
        topics = [t for t in self._consumer.topics() if t in names or t.endswith(tuple(f".{n}" for n in names))]
        tps = [TopicPartition(t, p) for t in sorted(topics) for p in sorted(self._consumer.partitions_for_topic(t))]
        ends = self._consumer.end_offsets(tps) if tps else {}
        for tp in tps:
            end.add_metric([tp.topic, str(tp.partition)], ends[tp])
        groups = [group["group_id"] for group in self._admin.list_groups()]
        offsets = self._admin.list_group_offsets(groups) if groups else {}  # one request (OffsetFetch v8)
        for group, committed_offsets in offsets.items():
            for tp, committed in committed_offsets.items():
                if tp in ends and (tp.topic == media_topic or tp.topic.endswith(f".{media_topic}")):
                    lag.add_metric([group, group_role(group), tp.topic, str(tp.partition)],
                                   max(0, ends[tp] - committed.offset))
        yield lag
        yield end

    def _milvus(self) -> Iterator[GaugeMetricFamily]:
        from pymilvus import Collection, utility

        from mimamori.stores.milvus import connect, count_entities

        alias = connect(self.settings)
        family = GaugeMetricFamily("mimamori_milvus_entities", "Entities in each Milvus collection",
                                   labels=["collection"])
        prefixes = (self.settings.milvus.collection_prefix, self.settings.milvus.media_collection_prefix,
                    self.settings.milvus.enrolled_collection_prefix, self.settings.milvus.sightings_collection)
        for name in utility.list_collections(using=alias):
            if any(name.startswith(p) or f"_{p}" in name for p in prefixes):  # namespaced ones too
                family.add_metric([name], count_entities(Collection(name, using=alias)))
        yield family

    def _database(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from mimamori.stores.cases import Match, utcnow

        with self._case_database()() as session:
            pending, oldest = session.execute(
                select(func.count(Match.id), func.min(Match.created_at)).where(Match.status == "pending_review")
            ).one()
        count = GaugeMetricFamily("mimamori_watchlist_pending_matches", "Matches waiting for review")
        count.add_metric([], pending)
        age = GaugeMetricFamily("mimamori_watchlist_oldest_pending_match_age_seconds",
                                "How long the oldest match waiting for review has waited (0: none)")
        age.add_metric([], (utcnow() - oldest).total_seconds() if oldest is not None else 0.0)
        yield count
        yield age

    def _case_database(self) -> sessionmaker:
        """The case database's sessionmaker, opened at the first read (shared by its two sources)."""
        from mimamori.stores.cases import open_database

        if self._sessions is None:
            self._sessions = open_database(self.settings.database_url())
        return self._sessions

    def _takedowns(self) -> Iterator[GaugeMetricFamily]:
        """Takedowns by state, overdue escalations, and re-checks the re-check service has fallen behind on
        (issue 19). A source of its own: a database without the takedown tables leaves the others reporting."""
        from sqlalchemy import func, select

        from mimamori.stores.cases import utcnow
        from mimamori.stores.takedowns import OPEN_STATES, STATES, Takedown

        now = utcnow()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._case_database()() as session:
            counts = dict(session.execute(select(Takedown.state, func.count()).group_by(Takedown.state)).all())

            def count(*where) -> int:
                return session.scalar(select(func.count(Takedown.id)).where(*where)) or 0

            open_ = Takedown.state.in_(OPEN_STATES)
            overdue = count(open_, Takedown.next_escalation_at < today)
            due_today = count(open_, Takedown.next_escalation_at < today + dt.timedelta(days=1))
            behind = count(Takedown.state != "closed", Takedown.next_check_at < now - RECHECK_GRACE)
        by_state = GaugeMetricFamily("mimamori_takedowns", "Takedowns by state", labels=["state"])
        for state in STATES:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        for name, value, text in (
                ("mimamori_takedowns_overdue", overdue,
                 "Open takedowns whose next escalation step was due before today"),
                ("mimamori_takedowns_escalation_due", due_today,
                 "Open takedowns with an escalation step due by today's end"),
                ("mimamori_takedown_rechecks_behind", behind,
                 f"Takedowns whose re-check is over {RECHECK_GRACE.total_seconds() / 3600:.0f} h late")):
            family = GaugeMetricFamily(name, text)
            family.add_metric([], value)
            yield family


def serve(settings: Settings) -> None:
    registry = CollectorRegistry()
    errors = Counter("mimamori_exporter_errors_total", "Sources the exporter could not read", ["source"],
                     registry=registry)
    for source in ("kafka", "milvus", "database", "takedowns"):
        errors.labels(source=source)
    collector = StateCollector(settings, errors)
    collector.refresh()
    registry.register(collector)
    host, _, port = settings.stack.monitoring.exporter_address.rpartition(":")
    start_http_server(int(port), addr=host, registry=registry)
    log.info("exporter on http://%s/metrics", settings.stack.monitoring.exporter_address)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(settings.stack.monitoring.exporter_interval_s):
        collector.refresh()
        targets = settings.scrape_targets_dir()
        if targets is not None:
            # The local stack's only long-running process of ours also keeps Prometheus's
            # discovery files true: a worker killed with SIGKILL leaves its file behind, and a
            # target that is gone would read as down (MimamoriTargetDown) until the next stack up.
            forget_dead_targets(targets)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(load_settings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
