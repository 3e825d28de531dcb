"""Reference images' local features (issue 20): kept beside the reference, read by the watchlist.

A reference image's ORB keypoints (mimamori.media.local_features, of the picture and its
mirror) are computed at enrolment, when the picture is at hand (its original is not kept by
default), and stored as one small .npz object under the reference's prefix in the references
bucket. So withdrawal deletes them with the reference's other objects, and backups hold them
with the bucket. References enrolled before keypoints were kept, imported hash lists and
reference videos have none: they match by PDQ alone.

``ReferenceFeatures`` is the watchlist's view: one small query per batch for the watched cases'
reference images, each file read once per process, and one in-memory index rebuilt only when
that set changes.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from typing import Any

from minio.error import S3Error
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from mimamori.media.local_features import FeatureGallery, LocalFeatures, from_bytes, to_bytes
from mimamori.stores.references import ReferenceMedia

log = logging.getLogger(__name__)

FILE_NAME = "local-features.npz"


def features_key(case_id: str, sha256: str) -> str:
    return f"cases/{case_id}/references/{sha256}/{FILE_NAME}"


def store_features(objects: Any, bucket: str, case_id: str, sha256: str, variants: list[LocalFeatures]) -> None:
    """Write a reference's features (idempotent: the same picture writes the same key)."""
    data = to_bytes(variants)
    objects.put_object(bucket, features_key(case_id, sha256), io.BytesIO(data), len(data),
                       content_type="application/octet-stream")


Owner = tuple[str, str]  # (case id, reference sha256)


class ReferenceFeatures:
    """The watched cases' reference features in one index, for the watchlist."""

    def __init__(self, sessions: sessionmaker, objects_factory: Callable[[], Any], bucket: str):
        self.sessions, self.objects_factory, self.bucket = sessions, objects_factory, bucket
        self._objects = None
        self._files: dict[Owner, list[LocalFeatures] | None] = {}  # None: the reference has none
        self._owners: list[Owner] = []
        self._gallery = FeatureGallery()

    def gallery_for(self, case_ids: list[str]) -> tuple[FeatureGallery, list[Owner]]:
        """The index of the reference images of these cases, and who each owner number is."""
        with self.sessions() as session:
            rows = session.execute(select(ReferenceMedia.case_id, ReferenceMedia.sha256).where(
                ReferenceMedia.case_id.in_(case_ids), ReferenceMedia.kind == "image")).all() if case_ids else []
        wanted = sorted((case_id, sha) for case_id, sha in rows)
        if wanted == self._owners:
            return self._gallery, self._owners
        for owner in wanted:
            if owner not in self._files:
                self._files[owner] = self._read(*owner)
        self._files = {owner: self._files[owner] for owner in wanted}  # withdrawn cases' are dropped
        gallery = FeatureGallery()
        for number, owner in enumerate(wanted):
            gallery.add(number, self._files[owner] or [])
        self._owners, self._gallery = wanted, gallery
        return gallery, wanted

    def _read(self, case_id: str, sha256: str) -> list[LocalFeatures] | None:
        if self._objects is None:
            self._objects = self.objects_factory()
        try:
            response = self._objects.get_object(self.bucket, features_key(case_id, sha256))
        except S3Error as error:
            if error.code == "NoSuchKey":
                return None
            raise
        try:
            return from_bytes(response.read())
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
            # A damaged file: that reference matches by PDQ alone.
            log.warning("local features of reference %s of case %s unreadable: %s", sha256[:12], case_id, error)
            return None
        finally:
            response.close()
            response.release_conn()
