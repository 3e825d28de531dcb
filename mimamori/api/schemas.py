"""Request and response bodies of the HTTP API (pydantic), apart from the routes that use them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mimamori.services.consent import ConsentRecord

Role = Literal["admin", "reviewer", "auditor"]
ReviewStatus = Literal["pending_review", "confirmed", "rejected"]

__all__ = ["AuditOut", "CaseIn", "CaseOut", "ConsentRecord", "EnrolmentOut", "KeyIn", "KeyOut", "MatchOut",
           "ReviewIn", "WithdrawalOut"]


class CaseIn(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    display_name: str = Field(min_length=1, max_length=200)
    match_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class CaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    display_name: str
    match_threshold: float | None
    threshold_model: str | None = Field(description="The model the threshold was set for; others use their default")
    created_at: dt.datetime
    created_by: str
    photos: int
    matches: int
    consent_in_force: bool


class EnrolmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    case_id: str
    photos: list[str]
    retro_matches: int


class WithdrawalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    case_id: str
    vectors: int
    objects: int
    photos: int
    matches: int


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class KeyOut(BaseModel):
    name: str
    role: str
    key: str = Field(description="Shown once; only its hash is stored")


class MatchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_id: str
    face_id: int
    media_sha256: str
    similarity: float
    source: str
    status: str
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    reviewed_by: str | None
    reviewed_at: dt.datetime | None


class ReviewIn(BaseModel):
    status: ReviewStatus


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    case_id: str | None
    target: str | None
    result_count: int | None
    outcome: str
