"""The current per-case head of each watched case, as the watchlist applies it (issue 20).

Kept apart from services/case_models.py (training), which records its new matches through the
watchlist: one small query per batch for the newest version of each case, and the weights read
from the object store once per version, checked against the SHA-256 their row holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from mimamori.models.case_head import CaseHead
from mimamori.stores.case_models import CaseModel


def load_head(objects: Any, bucket: str, row: CaseModel) -> CaseHead:
    """The head of a version row, its weights checked against the row's SHA-256."""
    data = objects.get_object(bucket, row.object_key).read()
    if hashlib.sha256(data).hexdigest() != row.weights_sha256:
        raise ValueError(f"weights of case model {row.case_id} v{row.version} do not match their SHA-256")
    return CaseHead.from_bytes(data)


class HeadCache:
    """The current head of each case, for the watchlist: one small query per batch, weights read once
    per version (a new version is picked up at the next batch)."""

    def __init__(self, sessions: sessionmaker, objects_factory: Callable[[], Any], bucket: str):
        self.sessions, self.objects_factory, self.bucket = sessions, objects_factory, bucket
        self._objects = None
        self._heads: dict[tuple[str, int], CaseHead] = {}

    def heads_for(self, case_ids: list[str]) -> dict[str, tuple[int, CaseHead]]:
        if not case_ids:
            return {}
        newest = (select(CaseModel.case_id, func.max(CaseModel.version).label("version"))
                  .where(CaseModel.case_id.in_(case_ids)).group_by(CaseModel.case_id).subquery())
        with self.sessions() as session:
            rows = list(session.scalars(select(CaseModel).join(
                newest, (CaseModel.case_id == newest.c.case_id) & (CaseModel.version == newest.c.version))))
        found = {}
        for row in rows:
            key = (row.case_id, row.version)
            if key not in self._heads:
                if self._objects is None:
                    self._objects = self.objects_factory()
                self._heads[key] = load_head(self._objects, self.bucket, row)
            found[row.case_id] = (row.version, self._heads[key])
        return found
