"""Local features with geometric verification (mimamori.media.local_features): what they match and what not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimamori.core.config import MatchingConfig
from mimamori.media import local_features
from mimamori.media.local_features import FeatureGallery, LocalFeatures, extract, ratio_matches
from tests.support import edits

THRESHOLD = MatchingConfig().local_min_inliers
PORTRAITS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham", "multiface")


@pytest.fixture(scope="module")
def photos(testdata: Path) -> list[Image.Image]:
    pictures = [Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB") for name in PORTRAITS]
    pictures += [Image.open(p).convert("RGB") for p in sorted((testdata / "lfw").glob("*/*_0001.jpg"))[:15]]
    return pictures


@pytest.fixture(scope="module")
def gallery(photos: list[Image.Image]) -> FeatureGallery:
    index = FeatureGallery()
    for owner, image in enumerate(photos):
        index.add(owner, local_features.extract_reference(image))
    return index


def test_features_are_binary_descriptors_at_bounded_size(photos: list[Image.Image]) -> None:
    found = extract(photos[0])
    assert 100 < len(found) <= local_features.FEATURES
    assert found.descriptors.dtype == np.uint8 and found.descriptors.shape[1] == 32
    assert found.points.shape == (len(found), 2)
    assert max(found.size) == local_features.MAX_SIDE  # taken from the picture scaled to MAX_SIDE
    assert found.points.max() <= local_features.MAX_SIDE


def test_flat_or_tiny_pictures_have_no_features_and_match_nothing(gallery: FeatureGallery) -> None:
    assert len(extract(Image.new("RGB", (300, 200), (120, 90, 60)))) == 0
    assert gallery.scores(extract(Image.new("RGB", (8, 8), (0, 0, 0)))) == {}


@pytest.mark.parametrize("edit", ["crop_30", "crop_corner_40", "mosaic_face_5", "eye_bar", "rotate_90", "mirror"])
def test_a_reupload_that_defeats_pdq_or_the_face_is_verified_against_its_source(
        photos: list[Image.Image], gallery: FeatureGallery, edit: str) -> None:
    catalogue = {e.name: e for e in edits.reupload_edits([photos[-1], photos[-2], photos[-3]])}
    image = photos[1]
    box = (image.width * 0.3, image.height * 0.2, image.width * 0.7, image.height * 0.6)
    scores = gallery.scores(extract(catalogue[edit].apply(image, [box])))
    assert scores.get(1, 0) >= THRESHOLD, scores
    others = {owner: n for owner, n in scores.items() if owner != 1}
    assert max(others.values(), default=0) < THRESHOLD, others


def test_different_pictures_stay_under_the_threshold(photos: list[Image.Image], gallery: FeatureGallery) -> None:
    for owner, image in enumerate(photos):
        scores = gallery.scores(extract(image), skip=owner)
        assert max(scores.values(), default=0) < THRESHOLD, (owner, scores)


def test_the_ratio_test_skips_the_mirror_but_not_repeated_texture() -> None:
    # Query 0: nearest in set 0, next in set 1 (the same owner's mirror: skipped), then set 2.
    near = [[(0, 5, 10.0), (1, 7, 11.0), (2, 3, 40.0)],
            # Query 1: two owners almost equally near: ambiguous, dropped.
            [(0, 6, 30.0), (2, 1, 32.0)],
            # Query 2: only one descriptor near at all: kept.
            [(2, 9, 12.0)],
            # Query 3: two places of the same picture equally near (repeated texture): dropped.
            [(2, 4, 20.0), (2, 8, 21.0), (0, 1, 60.0)]]
    kept = ratio_matches(near, owners=[0, 0, 1])
    assert kept == {0: [(0, 5)], 2: [(2, 9)]}


def test_inliers_count_one_similarity_transform() -> None:
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 400, (40, 2)).astype(np.float32)
    angle, scale = 0.4, 0.7
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T + np.float32([30, -12])
    moved[30:] = rng.uniform(0, 400, (10, 2))  # a quarter of the pairs are chance matches
    assert 28 <= local_features.inlier_mask(points, moved.astype(np.float32)).sum() <= 32
    assert local_features.inlier_mask(points[:2], moved[:2].astype(np.float32)).sum() == 0


def test_an_empty_gallery_scores_nothing(photos: list[Image.Image]) -> None:
    assert FeatureGallery().scores(extract(photos[0])) == {}
    empty = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    index = FeatureGallery()
    index.add(0, [empty])
    assert index.sets == [] and index.scores(extract(photos[0])) == {}


def test_features_round_trip_through_their_file_and_a_damaged_file_is_refused(photos: list[Image.Image]) -> None:
    variants = local_features.extract_reference(photos[2])
    again = local_features.from_bytes(local_features.to_bytes(variants))
    assert [f.size for f in again] == [f.size for f in variants]
    assert all(np.array_equal(a.descriptors, b.descriptors) and np.array_equal(a.points, b.points)
               for a, b in zip(again, variants, strict=True))
    import io

    data = local_features.to_bytes(variants)
    bare = io.BytesIO()
    np.save(bare, variants[0].descriptors)
    for damaged in (b"not an npz file", data[: len(data) // 2], data[:40] + bytes(200) + data[240:], bare.getvalue()):
        with pytest.raises(ValueError):
            local_features.from_bytes(damaged)


def test_a_tight_cluster_of_matches_is_not_a_match() -> None:
    cluster = np.float32([[300 + i % 5, 200 + i // 5] for i in range(20)])
    assert local_features.spread(cluster, (640, 480)) < local_features.MIN_SPREAD
    spread_out = np.float32([[0, 0], [320, 240], [100, 50]])
    assert local_features.spread(spread_out, (640, 480)) == 0.25


def test_the_cross_check_asks_only_for_the_paired_descriptors_and_agrees_with_the_whole_set(
        photos: list[Image.Image]) -> None:
    import cv2

    reference = extract(photos[0])
    query = extract(edits.crop(photos[0], 0.3))
    near = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, reference.descriptors, k=2)
    pairs = [(m.queryIdx, m.trainIdx) for m, _ in near] + [(5, 7), (9, 7)]  # and two that cannot both hold
    whole = {m.queryIdx: m.trainIdx for m in cv2.BFMatcher(cv2.NORM_HAMMING).match(reference.descriptors,
                                                                                     query.descriptors)}
    expected = [(q, t) for q, t in pairs if whole.get(t) == q]
    assert 50 < len(expected) < len(pairs)
    assert local_features.mutual(query, reference, pairs) == expected
