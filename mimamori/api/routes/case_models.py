"""The per-case model of a case (issue 20): thin calls into services/case_models.py."""

from __future__ import annotations

from fastapi import APIRouter

from mimamori.api.security import AdminOrReviewer, Work
from mimamori.services import case_models
from mimamori.services.case_models import CaseModelView, TrainingResult

router = APIRouter()


@router.post("/cases/{case_id}/models", status_code=201, tags=["reviewer"])
def train_model(case_id: str, actor: AdminOrReviewer, work: Work) -> TrainingResult:
    """Train the case's next model version now (it also retrains by itself after reviewer decisions)."""
    return case_models.train(work, actor, case_id)


@router.get("/cases/{case_id}/models", tags=["reviewer"])
def list_models(case_id: str, actor: AdminOrReviewer, work: Work) -> list[CaseModelView]:
    """Every trained version of the case's model, newest first (no weights)."""
    return case_models.versions(work, actor, case_id)
