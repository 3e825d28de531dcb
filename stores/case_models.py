"""Per-case models (issue 20): one row per trained version of a case's head, never edited.

The head's weights are a template of the client's face (the normalised mean of their faces,
corrected), so they are biometric data and live beside the reference photos in the object store
(``cases/<id>/models/v<N>.npz`` in the references bucket, deleted with the case's prefix on
withdrawal); the row holds where they are, their SHA-256, the thresholds and what the training
saw. Rows go with their case (ON DELETE CASCADE); a database trigger refuses any update, so a
version's record is what was trained and applied.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mimamori.stores.cases import Base, UTCDateTime, utcnow


class CaseModel(Base):
    __tablename__ = "case_models"
    __table_args__ = (UniqueConstraint("case_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per case
    base_model_version: Mapped[str] = mapped_column(String(128))  # the embedder whose vectors it scores
    object_key: Mapped[str] = mapped_column(String(300))  # the weights in the references bucket
    weights_sha256: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)  # the head's effective threshold
    base_threshold: Mapped[float] = mapped_column(Float)  # the case threshold it was trained around
    floor: Mapped[float] = mapped_column(Float)  # base similarity under which it accepts nothing
    positives: Mapped[int] = mapped_column(Integer)
    negatives: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    # Reviewer decisions (confirmed and rejected matches) of the case when it was trained: the
    # next training is due after ``case_models.retrain_after`` more.
    decisions: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(20))  # "manual" (CLI/API) or "decisions" (automatic)
    trained_by: Mapped[str] = mapped_column(String(200))
    trained_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # models.case_head.TrainingReport
