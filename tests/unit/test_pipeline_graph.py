"""The pipeline graph of transforms/pipeline.py on a TestPipeline, over in-memory stores.

``build_pipeline`` takes the records in place of the Kafka source (``records=``) and in-memory
stores in place of MinIO, Milvus, Kafka and the case database (``backends=``); everything in
between is the production graph: parse, fetch and decode, dedupe, MTCNN, alignment, dlib's
ResNet through RunInference, the batching writers. Outputs are checked with ``assert_that``
on the graph's PCollections and, after the run, on what the stores hold.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from mimamori.core.config import Settings
from mimamori.streams.events import DeadLetter
from mimamori.transforms.pipeline import PipelineOutputs
from tests.integration.samples import Sample, encode
from tests.support import edits
from tests.support.memory import MemoryStores
from tests.support.pipeline import MAX_MEDIA_BYTES, records, run


@pytest.fixture
def settings(offline_settings: Settings) -> Settings:
    offline_settings.pipeline.max_media_bytes = MAX_MEDIA_BYTES
    return offline_settings


@pytest.fixture
def stores(settings: Settings) -> Iterator[MemoryStores]:
    stores = MemoryStores(settings)
    yield stores
    stores.close()


def scaled(testdata: Path, name: str, factor: float) -> bytes:
    """A shared photo made smaller, as a JPEG: detection takes a fraction of the time, faces stay."""
    photo = Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB")
    return encode(edits.resize(photo, factor), "JPEG", quality=92)


@pytest.fixture(scope="module")
def portrait(testdata: Path) -> bytes:
    """paul_rudd.jpg at a third of its size: one face."""
    return scaled(testdata, "paul_rudd", 1 / 3)


@pytest.fixture(scope="module")
def group(testdata: Path) -> bytes:
    """multiface.jpg at half its size: six faces, the smallest 35 px wide."""
    return scaled(testdata, "multiface", 1 / 2)


def faces_per_media(stores: MemoryStores) -> dict[str, int]:
    """first media id -> face count, from the media rows (written once a media's faces are)."""
    return {row["first_media_id"]: row["face_count"] for row in stores.media.rows.values()}


def described(outputs: PipelineOutputs) -> dict[str, beam.PCollection]:
    """The graph's outputs as small tuples: (media id, faces) indexed, (media id, match) seen again."""
    return {
        "indexed": outputs.indexed | "FacesOf" >> beam.Map(lambda item: (item.event.media_id, len(item.faces))),
        "sightings": outputs.sightings | "MatchOf" >> beam.Map(lambda item: (item.event.media_id, item.known.match)),
    }


def test_good_media_is_indexed_with_its_faces_once_however_often_it_is_read(settings, stores, portrait, group):
    """At-least-once reading: the portrait's record comes twice and still gives one face, one crop, one row."""
    batch = records(stores, settings, [Sample("paul", portrait, "image/jpeg", "faces:1"),
                                       Sample("group", group, "image/jpeg", "faces:6")], "p1")
    batch.append(batch[0])

    def check(outputs: PipelineOutputs) -> None:
        shown = described(outputs)
        assert_that(shown["indexed"], equal_to([("p1:paul", 1), ("p1:paul", 1), ("p1:group", 6)]), label="Indexed")
        assert_that(shown["sightings"], equal_to([]), label="NoSightings")

    run(settings, stores, batch, check)
    assert faces_per_media(stores) == {"p1:paul": 1, "p1:group": 6}
    face_ids = set(stores.faces.rows)
    assert len(face_ids) == 7 and stores.faces.upserts == 8  # the portrait's face written twice, on one key
    crops = stores.objects.keys(settings.minio.buckets.crops.name)
    assert sorted(crops) == sorted(row["crop_key"] for row in stores.faces.rows.values())
    events = stores.producer.messages(settings.kafka.topics.faces_indexed.name)
    assert {int(message.key) for message in events} == face_ids
    assert {row["match"] for row in stores.sightings.rows.values()} == {"original"} and len(stores.sightings.rows) == 2
    assert stores.producer.messages(settings.kafka.topics.media_dlq.name) == []
    assert stores.metrics_endpoints == [(0, "127.0.0.1", settings.scrape_targets_dir())]


def test_a_reupload_becomes_a_sighting_not_new_faces(settings, stores, portrait):
    first = records(stores, settings, [Sample("paul", portrait, "image/jpeg", "faces:1")], "p1")
    run(settings, stores, first)
    indexed = dict(stores.faces.rows)
    reencoded = encode(Image.open(io.BytesIO(portrait)), "JPEG", quality=60)
    again = records(stores, settings, [Sample("paul_exact", portrait, "image/jpeg", "sighting:exact"),
                                       Sample("paul_near", reencoded, "image/jpeg", "sighting:near")], "p2")

    def check(outputs: PipelineOutputs) -> None:
        shown = described(outputs)
        assert_that(shown["indexed"], equal_to([]), label="NothingIndexed")
        assert_that(shown["sightings"], equal_to([("p2:paul_exact", "exact"), ("p2:paul_near", "near"),
                                                  ("p1:paul", "original")]), label="Sightings")

    run(settings, stores, [*again, *first], check)  # the first upload read again too (a replay)
    assert stores.faces.rows == indexed and faces_per_media(stores) == {"p1:paul": 1}
    sightings = sorted((row["media_id"], row["match"]) for row in stores.sightings.rows.values())
    assert sightings == [("p1:paul", "original"), ("p2:paul_exact", "exact"), ("p2:paul_near", "near")]
    canonical = {row["canonical_sha256"] for row in stores.sightings.rows.values()}
    assert canonical == {next(iter(indexed.values()))["media_sha256"]}


def test_malformed_events_and_broken_files_become_dead_letters_with_their_reasons(settings, stores, bad_media):
    batch = records(stores, settings, bad_media, "bad")
    expected = [(f"bad:{s.name}", s.expect.removeprefix("dlq:")) for s in bad_media]

    def check(outputs: PipelineOutputs) -> None:
        letters = outputs.dead_letters | beam.Flatten()
        # A record that is not a valid event has no media id of its own: the letter carries its Kafka key.
        assert_that(letters | beam.Map(lambda letter: (letter.media_id, letter.reason)), equal_to(expected),
                    label="Reasons")

    run(settings, stores, batch, check)
    letters = [DeadLetter.from_json(m.value) for m in stores.producer.messages(settings.kafka.topics.media_dlq.name)]
    assert sorted((letter.media_id, letter.reason) for letter in letters) == sorted(expected)
    offsets = {record.key.decode(): record.offset for record in batch}
    for letter in letters:
        assert letter.stage == ("parse" if letter.reason in PARSE_REASONS else "decode"), letter
        assert letter.original["offset"] == offsets[letter.media_id] and letter.error
    assert stores.media.rows == {} and stores.faces.rows == {} and stores.sightings.rows == {}


PARSE_REASONS = {"malformed_json", "unsupported_schema_version", "schema_invalid"}
