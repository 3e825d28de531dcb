"""The face pipeline: media.scraped -> parse -> decode -> dedupe -> detect -> align -> embed -> write.

``build_pipeline`` adds every transform to a given ``beam.Pipeline``, so the CLI runs it
on Prism or Flink and a test runs it on a ``TestPipeline``. Everything from the Kafka
source to the writers stays in one fused stage (no shuffle on the way), which is what makes
the source's commit-on-finalize mean "committed after written" (see streams/kafka_source.py).
The one shuffle, ``GiveTheStageAnOutput``, hangs off the side and never carries an element.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam

from mimamori.core.config import Settings
from mimamori.core.native_heap import start_trimming
from mimamori.models.embedders import check_weights
from mimamori.streams.kafka_source import ReadFromKafka
from mimamori.transforms.align import AlignFaces
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.decode import FetchAndDecode
from mimamori.transforms.dedupe import SIGHTING, Dedupe
from mimamori.transforms.detect import DetectFaces
from mimamori.transforms.elements import Incoming, MediaItem
from mimamori.transforms.embed import EmbedFaces
from mimamori.transforms.local_scores import ScoreLocalFeatures
from mimamori.transforms.parse import ParseMediaEvent
from mimamori.transforms.read_ahead import read_ahead
from mimamori.transforms.stage import DEAD_LETTER
from mimamori.transforms.write import WriteDeadLetters, WriteIndexedMedia, WriteSightings

WITH_FACES = "with_faces"


@dataclass(frozen=True)
class SourceOptions:
    """Which slice of the topic to read, and under which consumer group."""

    group_id: str | None = None
    start_time_ms: int | None = None
    stop_time_ms: int | None = None
    until_idle_s: float | None = None
    topic: str | None = None


class _StartWorkerProcess(beam.DoFn):
    """Once per worker process: its Prometheus endpoint and its heap trimmer; passes elements on."""

    def __init__(self, port: int, address: str, targets_dir: Path | None, heap_trim_interval_s: float,
                 backends: Backends = PRODUCTION):
        self.port, self.address, self.targets_dir = port, address, targets_dir
        self.heap_trim_interval_s = heap_trim_interval_s
        self.backends = backends

    def setup(self) -> None:
        self.backends.metrics_endpoint(self.port, self.address, self.targets_dir)
        start_trimming(self.heap_trim_interval_s)

    def process(self, element):
        yield element


@dataclass(frozen=True)
class PipelineOutputs:
    """The graph's PCollections where the writers take them: what a test asserts on (``assert_that``)."""

    dead_letters: tuple[beam.PCollection, ...]  # DeadLetter, one PCollection per stage
    sightings: beam.PCollection  # MediaItem already indexed, with ``known`` set
    indexed: beam.PCollection  # new MediaItem with faces and embeddings
    without_faces: beam.PCollection  # new MediaItem in which no face was found


def _route_by_faces(item: MediaItem):
    if item.faces:
        yield beam.pvalue.TaggedOutput(WITH_FACES, item)
    else:
        yield item


class GiveTheStageAnOutput(beam.PTransform):
    """An edge that carries nothing out of the fused stage, so that Prism waits instead of spinning.

    Prism (Beam 2.77) closes a bundle's "all data received" channel at once when its stage
    sends nothing back to the runner (worker/bundle.go), and its progress loop (stage.go) then
    selects on that closed channel again and again until the bundle ends. Our one stage writes
    everything itself, so Prism spent a core for the whole of every source bundle: 40 s of CPU
    in a 38 s benchmark run on a 2-core machine, against 1 s with this edge
    (docs/benchmarks.md). A Reshuffle is done by the runner, so the stage gets one output; no
    element ever crosses it. Other runners just see an empty branch.
    """

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return (pcoll
                | "Nothing" >> beam.FlatMap(lambda _: ())
                | "AcrossTheRunner" >> beam.Reshuffle()
                | "Dropped" >> beam.Map(lambda _: None))


def build_pipeline(pipeline: beam.Pipeline, settings: Settings, source: SourceOptions = SourceOptions(),
                   records: beam.PTransform | None = None, backends: Backends = PRODUCTION) -> PipelineOutputs:
    """Add the face pipeline to ``pipeline``; return its PCollections before the writers.

    ``records`` replaces the Kafka source and ``backends`` the services the stages write to
    (tests: in-memory stores, transforms/backends.py).
    """
    check_weights(settings.models.embedder)  # fail here, not in every worker
    if records is None:
        records = ReadFromKafka(
            settings.kafka.client_options(),
            source.topic or settings.kafka.topics.media_scraped.name,
            source.group_id if source.group_id is not None else settings.kafka.consumer_group,
            start_time_ms=source.start_time_ms,
            stop_time_ms=source.stop_time_ms,
            until_idle_s=source.until_idle_s,
            max_records_per_bundle=settings.pipeline.max_records_per_bundle,
            bundle_read_s=settings.pipeline.bundle_read_s,
        )
    raw = pipeline | "ReadMediaScraped" >> records | "StartWorkerProcess" >> beam.ParDo(_StartWorkerProcess(
        settings.metrics.port, settings.metrics.bind_address, settings.scrape_targets_dir(),
        settings.pipeline.heap_trim_interval_s, backends))
    raw | "GiveTheStageAnOutput" >> GiveTheStageAnOutput()
    dead_letters = []

    def stage(pcoll, name: str, dofn: beam.DoFn, *extra_outputs: str, output_type: type = MediaItem):
        # The element type picks InMemoryCoder (transforms/elements.py) for the main output.
        outputs = pcoll | name >> beam.ParDo(dofn).with_output_types(output_type).with_outputs(
            DEAD_LETTER, *extra_outputs, main="main")
        outputs[DEAD_LETTER] | f"DeadLetters[{name}]" >> beam.ParDo(WriteDeadLetters(settings, backends))
        dead_letters.append(outputs[DEAD_LETTER])
        return outputs

    parsed = stage(raw, "Parse", ParseMediaEvent(), output_type=Incoming)
    ahead = settings.pipeline.read_ahead
    decoded = stage(parsed.main, "FetchAndDecode", read_ahead(FetchAndDecode(settings, backends), ahead))
    deduped = stage(decoded.main, "Dedupe", read_ahead(Dedupe(settings, backends), ahead), SIGHTING)
    deduped[SIGHTING].element_type = MediaItem
    deduped[SIGHTING] | "WriteSightings" >> beam.ParDo(WriteSightings(settings, backends))
    new = deduped.main
    if settings.matching.local_features:  # the crop-robust signal's scores, beside detection (issue 20)
        new = stage(new, "ScoreLocalFeatures", read_ahead(ScoreLocalFeatures(settings, backends), ahead)).main
    detected = stage(new, "DetectFaces", DetectFaces(settings))
    aligned = stage(detected.main, "AlignFaces", AlignFaces(settings))
    routed = aligned.main | "RouteByFaces" >> beam.FlatMap(_route_by_faces).with_output_types(
        MediaItem).with_outputs(WITH_FACES, main="none")
    routed[WITH_FACES].element_type = MediaItem
    embedded = routed[WITH_FACES] | "EmbedFaces" >> EmbedFaces(settings)
    embedded | "WriteIndexedMedia" >> beam.ParDo(WriteIndexedMedia(settings, backends))
    routed.none | "WriteMediaWithoutFaces" >> beam.ParDo(WriteIndexedMedia(settings, backends))
    return PipelineOutputs(tuple(dead_letters), deduped[SIGHTING], embedded, routed.none)
