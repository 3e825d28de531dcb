"""Watchlist matching (mimamori/services/watchlist.py): thresholds, consent, and one match per case and face.

The case database is SQLite in ``tmp_path``, the enrolled faces and the ``matches`` topic are in
memory (tests/support/memory.py); the ``Watchlist`` itself is the one the pipeline's writers use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import select

from mimamori.core.config import Settings
from mimamori.media.decode import DecodedMedia
from mimamori.models.registry import embedder_spec
from mimamori.services.watchlist import IndexedFace, Watchlist
from mimamori.stores.cases import Case, Consent, Match, utcnow
from mimamori.streams.events import KafkaRecord, MediaEvent, now_utc
from mimamori.transforms.elements import MediaItem
from mimamori.transforms.write import indexed_face
from tests.support.memory import MemoryStores

MODEL_VERSION = "dlib-resnet/v1@test"
DIMENSION = 128
DEFAULT = embedder_spec("dlib-resnet").match_threshold  # 0.94
CLIENT = np.eye(DIMENSION, dtype=np.float32)[0]  # the client's enrolled face
OTHER, THIRD = np.eye(DIMENSION, dtype=np.float32)[1:3]


def like_client(similarity: float, aside: np.ndarray = OTHER) -> np.ndarray:
    """A unit vector whose inner product with the client's face is ``similarity`` (the rest along ``aside``)."""
    return (similarity * CLIENT + np.sqrt(1 - similarity**2) * aside).astype(np.float32)


def face(face_id: int, vector: np.ndarray, sha: str = "a" * 64) -> IndexedFace:
    return IndexedFace(face_id, sha, vector, f"site:{face_id}", f"https://example.test/{face_id}", "example",
                       utcnow() - dt.timedelta(seconds=5))


@pytest.fixture
def stores(offline_settings: Settings) -> Iterator[MemoryStores]:
    stores = MemoryStores(offline_settings)
    yield stores
    stores.close()


@pytest.fixture
def watchlist(offline_settings: Settings, stores: MemoryStores) -> Watchlist:
    return stores.watchlist(offline_settings, MODEL_VERSION)


def open_case(stores: MemoryStores, case_id: str, scope: tuple[str, ...] = ("search", "watchlist"),
              expires_in: dt.timedelta | None = dt.timedelta(days=30), threshold: float | None = None) -> None:
    """A case with one consent on record and the client's face enrolled."""
    now = utcnow()
    with stores.sessions.begin() as session:
        session.add(Case(id=case_id, display_name="C.", created_by="staff", match_threshold=threshold,
                         threshold_model="dlib-resnet" if threshold is not None else None))
        session.add(Consent(case_id=case_id, given_by="client", relationship_to_client="self",
                            given_at=now - dt.timedelta(days=60), scope=list(scope),
                            expires_at=now + expires_in if expires_in is not None else None, recorded_by="staff"))
    stores.enrolled.add(case_id, f"{case_id}-photo".ljust(64, "0"), MODEL_VERSION, CLIENT)


def matches(stores: MemoryStores) -> list[tuple[str, int, float, str]]:
    with stores.sessions() as session:
        return [(m.case_id, m.face_id, round(m.similarity, 3), m.status)
                for m in session.scalars(select(Match).order_by(Match.case_id, Match.face_id))]


def announced(stores: MemoryStores, settings: Settings) -> list[tuple[str, str, int]]:
    documents = stores.producer.documents(settings.kafka.topics.matches.name)
    return [(d["kind"], d["case_id"], d["face_id"]) for d in documents]


def test_a_face_over_the_default_threshold_is_a_match_waiting_for_review_announced_once(
        offline_settings, stores, watchlist):
    open_case(stores, "c1")
    faces = [face(1, like_client(DEFAULT + 0.01)), face(2, like_client(DEFAULT - 0.01)), face(3, OTHER)]
    new = watchlist.check(faces)
    assert [(m.case_id, m.face_id) for m in new] == [("c1", 1)]
    assert matches(stores) == [("c1", 1, round(DEFAULT + 0.01, 3), "pending_review")]
    assert announced(stores, offline_settings) == [("match", "c1", 1)]
    assert watchlist.check(faces) == []  # a replay or a retry: the (case, face) match exists
    assert len(matches(stores)) == 1 and len(announced(stores, offline_settings)) == 1


def test_each_case_has_its_own_threshold(stores, watchlist):
    open_case(stores, "strict", threshold=0.99)
    open_case(stores, "default")
    watchlist.check([face(1, like_client(0.97)), face(2, like_client(0.995))])
    assert [(case, face_id) for case, face_id, _s, _st in matches(stores)] == [
        ("default", 1), ("default", 2), ("strict", 2)]


def test_only_a_consent_in_force_that_covers_the_watchlist_lets_faces_match(stores, watchlist):
    open_case(stores, "search-only", scope=("search",))
    open_case(stores, "expired", expires_in=dt.timedelta(days=-1))
    open_case(stores, "no-expiry", expires_in=None)
    watchlist.check([face(1, like_client(0.99))])
    assert [case for case, *_rest in matches(stores)] == ["no-expiry"]


def test_a_face_like_two_photos_of_one_case_is_one_match_at_the_best_similarity(stores, watchlist):
    open_case(stores, "c1")
    second = like_client(0.98, aside=THIRD)  # another photo of the client
    stores.enrolled.add("c1", "b" * 64, MODEL_VERSION, second)
    new = like_client(0.99)
    assert float(new @ second) > DEFAULT and float(new @ CLIENT) > DEFAULT  # both photos match the face
    watchlist.check([face(1, new)])
    assert matches(stores) == [("c1", 1, 0.99, "pending_review")]


def test_a_reupload_of_matched_media_is_announced_until_the_consent_lapses(offline_settings, stores, watchlist):
    open_case(stores, "c1")
    watchlist.check([face(1, like_client(0.99), sha="e" * 64)])
    seen = utcnow()
    assert watchlist.link_sightings([("e" * 64, "site:9", "https://example.test/9", "example", seen)]) == 1
    with stores.sessions() as session:
        assert session.scalars(select(Match)).one().last_seen_at == seen
    assert announced(stores, offline_settings) == [("match", "c1", 1), ("sighting", "c1", 1)]
    with stores.sessions.begin() as session:
        session.scalars(select(Consent)).one().expires_at = utcnow() - dt.timedelta(seconds=1)
    assert watchlist.link_sightings([("e" * 64, "site:10", "https://example.test/10", "example", utcnow())]) == 0
    assert watchlist.check([face(2, like_client(0.99), sha="f" * 64)]) == []  # no new match either
    assert len(announced(stores, offline_settings)) == 2


def test_a_match_keeps_the_medias_phash_for_the_review_queues_near_duplicate_clusters(stores, watchlist):
    open_case(stores, "c1")
    phash = bytes.fromhex("f0e1d2c3b4a59687")
    event = MediaEvent(media_id="site:1", source_url="https://example.test/1", platform="example",
                       scraped_at=now_utc(), content_type="image/jpeg", object_key="raw/aa/aa")
    item = MediaItem(KafkaRecord("media.scraped", 0, 0, None, b"site:1", event.to_json()), event,
                     DecodedMedia("a" * 64, "image", 600, 400), phash)
    indexed = indexed_face({"face_id": 5}, item, like_client(0.99))  # as the indexed-media writer builds it
    assert indexed.media_phash == "f0e1d2c3b4a59687"
    assert len(watchlist.check([indexed, face(6, like_client(0.99), sha="b" * 64)])) == 2
    with stores.sessions() as session:
        assert {m.face_id: m.media_phash for m in session.scalars(select(Match))} == {5: "f0e1d2c3b4a59687", 6: None}
