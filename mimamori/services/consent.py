"""Consent: what a client allowed, as staff recorded it, and the check every case action makes.

Enrolled vectors exist only to be searched for or watched for: a consent that covers
neither (takedown only) does not allow storing them. The retro search at enrolment is a
search of what was indexed before, so it runs only when the consent covers "search";
a search by case needs "search"; an export for takedown requests needs "takedown".
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from mimamori.core.errors import ConsentMissing
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Consent, consent_in_force, get_case, utcnow

Scope = Literal["search", "watchlist", "takedown"]
ENROLMENT_SCOPES = ("search", "watchlist")


class ConsentRecord(BaseModel):
    """The consent a client (or their representative) gave, as staff recorded it."""

    model_config = ConfigDict(extra="forbid")

    given_by: str = Field(min_length=1, max_length=200)
    relationship_to_client: str = Field(default="self", min_length=1, max_length=100)
    given_at: dt.datetime
    scope: list[Scope] = Field(min_length=1)
    expires_at: dt.datetime | None = None
    recorded_by: str = Field(min_length=1, max_length=200)
    document_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _times(self) -> ConsentRecord:
        for name in ("given_at", "expires_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-11-20T10:00:00Z)")
        if self.given_at > utcnow() + dt.timedelta(minutes=5):
            raise ValueError("given_at is in the future")
        if self.expires_at is not None and self.expires_at <= self.given_at:
            raise ValueError("expires_at is not after given_at")
        return self


def active_consent(session: Session, case_id: str, scope: str | tuple[str, ...] | None = None) -> Consent | None:
    """The newest consent in force for the case that covers ``scope`` (any of a tuple), if any."""
    now = utcnow()
    consents = session.scalars(select(Consent).where(Consent.case_id == case_id).order_by(Consent.recorded_at.desc()))
    return next((c for c in consents if consent_in_force(c, now, scope)), None)


def require_consent(session: Session, case_id: str, scopes: tuple[str, ...], doing: str) -> Consent:
    """The consent in force that covers one of ``scopes``, or a refusal that says what is wrong:
    no consent recorded (``consent_missing``), every one expired (``consent_expired``), or none
    in force covering the scope (``consent_out_of_scope``)."""
    consent = active_consent(session, case_id, scopes)
    if consent is not None:
        return consent
    wanted = " or ".join(scopes)
    if session.scalars(select(Consent.id).where(Consent.case_id == case_id)).first() is None:
        raise ConsentMissing("consent_missing", f"case {case_id} has no consent on record: record the client's "
                                                f"consent (covering {wanted}) before {doing}")
    if active_consent(session, case_id) is None:
        raise ConsentMissing("consent_expired", f"the consent of case {case_id} has expired: record the client's "
                                                f"renewed consent (covering {wanted}) before {doing}")
    raise ConsentMissing("consent_out_of_scope", f"the consent in force for case {case_id} does not cover "
                                                 f"{wanted}, which {doing} needs")


def record_consent(work: Workspace, actor: Actor, case_id: str, consent: ConsentRecord) -> None:
    with refusals_audited(work.sessions, actor, "record_consent", case_id=case_id), work.sessions.begin() as session:
        get_case(session, case_id)
        session.add(Consent(case_id=case_id, **consent.model_dump()))
        record(work.sessions, actor, "record_consent", case_id=case_id, scope=list(consent.scope), session=session)
