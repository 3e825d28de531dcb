"""Request and response bodies of the HTTP API (pydantic), apart from the routes that use them.

Where a service returns a plain dataclass (CaseSummary, EnrolmentResult, WithdrawalReport,
MatchView), the routes answer with it as it is: its fields are the response's.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mimamori.services.auth import ROLES
from mimamori.services.consent import ConsentRecord
from mimamori.stores.cases import REVIEW_STATUSES

Role = Literal[ROLES]  # type: ignore[valid-type]
ReviewStatus = Literal[REVIEW_STATUSES]  # type: ignore[valid-type]

__all__ = ["AuditOut", "CaseIn", "ConsentRecord", "InvitationOut", "KeyIn", "KeyOut", "ReviewIn", "UserIn"]


class CaseIn(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    display_name: str = Field(min_length=1, max_length=200)
    match_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class KeyOut(BaseModel):
    name: str
    role: str
    key: str = Field(description="Shown once; only its hash is stored")


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._@-]*$")
    role: Role


class InvitationOut(BaseModel):
    username: str
    role: str
    expires_at: dt.datetime
    url: str = Field(description="The one-time invitation link (shown once; only its hash is stored)")


class ReviewIn(BaseModel):
    status: ReviewStatus
    note: str | None = Field(default=None, max_length=2000, description="Why: kept in the decision log")


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
