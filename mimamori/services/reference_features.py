"""Reference images' local features (issue 20): kept beside the reference, read by the watchlist.

While ``matching.local_features`` is on, a reference image's ORB keypoints
(mimamori.media.local_features, of the picture and its mirror) are computed at enrolment, when the
picture is at hand (its original is not kept by default), and stored as one small .npz object
under the reference's prefix in the references bucket. So withdrawal deletes them with the
reference's other objects, and backups hold them with the bucket. They are kept only while the
signal is on because they are partly invertible to a rough picture. References enrolled while it
was off, imported hash lists and reference videos have none: they match by PDQ alone.

``ReferenceFeatures`` is the watchlist's view: one small query per batch for the watched cases'
reference images, each file read once per process, and one in-memory index rebuilt only when
that set changes. A file found missing (a picture enrolled while the signal was off) is asked for
again after ``retry_missing_s``, then after twice as long each time it is still missing, up to
``retry_missing_max_s``: enrolling the same picture again with the signal on writes it under the
same reference, which the set of references alone would not show, while thousands of references
enrolled with the signal off are not all fetched again every few minutes.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minio.error import S3Error
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from mimamori.media.local_features import FeatureGallery, LocalFeatures, from_bytes, to_bytes
from mimamori.stores.references import ReferenceMedia

log = logging.getLogger(__name__)

FILE_NAME = "local-features.npz"


@dataclass(frozen=True)
class WatchedGallery:
    """The watched cases' reference features in one index (``FeatureGallery``), which case each of its
    owner numbers is, and what it was built from: (case, reference sha256, has features) in order.
    Two galleries built from the same references give the same scores, so a score computed ahead of
    the writer (transforms/local_scores.py) stands where ``built_from`` is the writer's."""

    index: FeatureGallery
    cases: list[str]
    built_from: tuple[tuple[str, str, bool], ...]


def features_key(case_id: str, sha256: str) -> str:
    return f"cases/{case_id}/references/{sha256}/{FILE_NAME}"


def store_features(objects: Any, bucket: str, case_id: str, sha256: str, variants: list[LocalFeatures]) -> None:
    """Write a reference's features (idempotent: the same picture writes the same key)."""
    data = to_bytes(variants)
    objects.put_object(bucket, features_key(case_id, sha256), io.BytesIO(data), len(data),
                       content_type="application/octet-stream")


Reference = tuple[str, str]  # (case id, reference sha256)


class ReferenceFeatures:
    """The watched cases' reference features in one index, for the watchlist.

    The index's owners are cases, not references: the ratio test takes its rival from another
    owner, and two near-identical references of one case (an original and its resized copy, both
    enrolled) would otherwise cancel each other. Two cases that enrolled the same picture still
    do: each is then matched by PDQ alone.
    """

    def __init__(self, sessions: sessionmaker, objects_factory: Callable[[], Any], bucket: str,
                 retry_missing_s: float = 300.0, retry_missing_max_s: float = 6 * 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.sessions, self.objects_factory, self.bucket = sessions, objects_factory, bucket
        self.retry_missing_s, self.retry_missing_max_s, self.clock = retry_missing_s, retry_missing_max_s, clock
        self._objects = None
        self._files: dict[Reference, list[LocalFeatures] | None] = {}  # None: the reference has none
        self._missing: dict[Reference, tuple[float, float]] = {}  # a missing file: (when to ask again, the wait)
        self._references: list[Reference] = []
        self._gallery = WatchedGallery(FeatureGallery(), [], ())

    def gallery_for(self, case_ids: list[str]) -> WatchedGallery:
        """The index of the reference images of these cases, and which case each owner number is."""
        with self.sessions() as session:
            rows = session.execute(select(ReferenceMedia.case_id, ReferenceMedia.sha256).where(
                ReferenceMedia.case_id.in_(case_ids), ReferenceMedia.kind == "image")).all() if case_ids else []
        wanted = sorted((case_id, sha) for case_id, sha in rows)
        found_again = self._read_missing_again(wanted)
        if wanted == self._references and not found_again:
            return self._gallery
        for reference in wanted:
            if reference not in self._files:
                self._files[reference] = self._read_file(reference)
        self._files = {reference: self._files[reference] for reference in wanted}  # withdrawn cases' go
        self._missing = {reference: self._missing[reference] for reference in wanted if reference in self._missing}
        cases = sorted({case_id for case_id, _sha in wanted})
        number = {case_id: i for i, case_id in enumerate(cases)}
        gallery = FeatureGallery()
        for reference in wanted:
            gallery.add(number[reference[0]], self._files[reference] or [])
        built_from = tuple((case_id, sha, self._files[(case_id, sha)] is not None) for case_id, sha in wanted)
        self._references, self._gallery = wanted, WatchedGallery(gallery, cases, built_from)
        return self._gallery

    def _read_missing_again(self, wanted: list[Reference]) -> bool:
        """Ask again for the missing files whose wait is over; True if one is there now."""
        now, found = self.clock(), False
        for reference in wanted:
            if reference in self._missing and now >= self._missing[reference][0]:
                self._files[reference] = self._read_file(reference)
                found = found or self._files[reference] is not None
        return found

    def _read_file(self, reference: Reference) -> list[LocalFeatures] | None:
        """A reference's features (None: it has none); a missing file's next wait doubles."""
        features = self._read(*reference)
        if features is None:
            previous = self._missing.get(reference)
            wait = min(self.retry_missing_max_s, previous[1] * 2) if previous else self.retry_missing_s
            self._missing[reference] = (self.clock() + wait, wait)
        else:
            self._missing.pop(reference, None)
        return features

    def _read(self, case_id: str, sha256: str) -> list[LocalFeatures] | None:
        if self._objects is None:
            self._objects = self.objects_factory()
        try:
            response = self._objects.get_object(self.bucket, features_key(case_id, sha256))
        except S3Error as error:
            # Without s3:ListBucket (the pipeline's role on AWS), a missing key reads as AccessDenied.
            if error.code in ("NoSuchKey", "AccessDenied"):
                return None
            raise
        try:
            return from_bytes(response.read())
        except ValueError as error:  # a damaged file: that reference matches by PDQ alone
            log.warning("local features of reference %s of case %s unreadable: %s", sha256[:12], case_id, error)
            return None
        finally:
            response.close()
            response.release_conn()
