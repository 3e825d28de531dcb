"""Running the real pipeline graph on a ``TestPipeline`` over in-memory stores (tests/support/memory.py).

``records`` turns samples (tests/integration/samples.py) into the ``media.scraped`` records the
Kafka source would read, with their bytes in the in-memory media bucket, as the integration
tests' ``publish`` does on the stack. ``run`` builds the graph with ``build_pipeline``'s
``records=`` and ``backends=`` hooks and hands its outputs to ``check``, which adds
``assert_that``s before the pipeline runs on the DirectRunner.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline

from mimamori.core.config import Settings
from mimamori.streams.events import KafkaRecord, MediaEvent, now_utc
from mimamori.streams.ingest import raw_object_key
from mimamori.transforms.pipeline import PipelineOutputs, build_pipeline
from tests.integration.samples import Sample
from tests.support.memory import MemoryStores

MAX_MEDIA_BYTES = 4_000_000  # the size limit the sample sets are made for (one is a byte over it)
_offsets = itertools.count()


def records(stores: MemoryStores, settings: Settings, samples: Iterable[Sample], phase: str) -> list[KafkaRecord]:
    """Each sample's bytes stored (none for a missing object) and its record, keyed ``<phase>:<name>``."""
    topic = settings.kafka.topics.media_scraped.name
    found = []
    for sample in samples:
        media_id = f"{phase}:{sample.name}"
        value = sample.raw_event
        if value is None:
            sha = hashlib.sha256(sample.data or b"missing" + sample.name.encode()).hexdigest()
            key = raw_object_key(sha)
            if sample.data is not None:
                stores.objects.put(settings.minio.buckets.media.name, key, sample.data)
            value = MediaEvent(media_id=media_id, source_url=f"https://example.test/{phase}/{sample.name}",
                               platform="example", scraped_at=now_utc(), content_type=sample.content_type,
                               object_key=key, sha256=sample.sha256_override or (sha if sample.data else None)
                               ).to_json()
        found.append(KafkaRecord(topic, 0, next(_offsets), 1_700_000_000_000, media_id.encode(), value))
    return found


def run(settings: Settings, stores: MemoryStores, batch: list[KafkaRecord],
        check: Callable[[PipelineOutputs], None] = lambda outputs: None) -> None:
    """The whole graph over ``batch`` on the DirectRunner, writing to ``stores``; ``check`` adds assertions."""
    with TestPipeline() as pipeline:
        check(build_pipeline(pipeline, settings, records=beam.Create(batch), backends=stores.backends()))

