"""Cases: opening one, what it holds at a glance, and withdrawal (deletion from every store).

Withdrawal deletes the case's vectors (of every model it was embedded with), reference
photos and crops, and rows; the audit log keeps a tombstone without biometric data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from mimamori.core.errors import CaseExists
from mimamori.models.registry import embedder_spec
from mimamori.services import takedowns
from mimamori.services.access import require_case_access
from mimamori.services.audit import Actor, begin_attempt, record, refusals_audited
from mimamori.services.consent import active_consent
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Case, case_threshold, get_case


@dataclass(frozen=True)
class CaseSummary:
    id: str
    display_name: str
    match_threshold: float | None
    threshold_model: str | None  # the model the threshold was set for; others use their default
    created_at: dt.datetime
    created_by: str
    photos: int
    matches: int
    consent_in_force: bool


@dataclass(frozen=True)
class WithdrawalReport:
    case_id: str
    vectors: int
    objects: int
    photos: int
    matches: int
    takedowns: int = 0  # closed, their URLs and notices' texts deleted (counts kept for the reports)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


def summary(work: Workspace, case_id: str) -> CaseSummary:
    with work.sessions() as session:
        case = get_case(session, case_id)
        return CaseSummary(case.id, case.display_name, case.match_threshold, case.threshold_model, case.created_at,
                           case.created_by, len(case.photos), len(case.matches),
                           active_consent(session, case.id) is not None)


def create_case(work: Workspace, actor: Actor, case_id: str, display_name: str,
                match_threshold: float | None = None) -> CaseSummary:
    with refusals_audited(work.sessions, actor, "create_case", case_id=case_id), work.sessions.begin() as session:
        if session.get(Case, case_id) is not None:
            raise CaseExists("case_exists", f"case {case_id} already exists")
        session.add(Case(id=case_id, display_name=display_name, match_threshold=match_threshold,
                         threshold_model=work.model if match_threshold is not None else None, created_by=actor.name))
        record(work.sessions, actor, "create_case", case_id=case_id, session=session)
    return summary(work, case_id)


def view_case(work: Workspace, actor: Actor, case_id: str) -> CaseSummary:
    """The case at a glance, for an admin or a reviewer it is assigned to (``not_assigned`` first:
    a reviewer learns nothing of a case that is not theirs, not even whether it exists)."""
    with refusals_audited(work.sessions, actor, "view_case", case_id=case_id):
        with work.sessions() as session:
            require_case_access(session, actor, case_id)
        found = summary(work, case_id)
    record(work.sessions, actor, "view_case", case_id=case_id)
    return found


def threshold(work: Workspace, case: Case) -> float:
    """The case's match threshold for the configured model (its own, or the model's default)."""
    return case_threshold(case, work.model, embedder_spec(work.model).match_threshold)


def withdraw(work: Workspace, actor: Actor, case_id: str) -> WithdrawalReport:
    """Delete everything the case holds, in every store; keep an audit tombstone."""
    with refusals_audited(work.sessions, actor, "withdraw", case_id=case_id), work.sessions() as session:
        get_case(session, case_id)
    # Milvus and MinIO deletions are not the database's: the attempt is on record before them.
    attempt = begin_attempt(work.sessions, actor, "withdraw", case_id=case_id)
    vectors = 0
    for model in work.enrolled_models():  # the case may have been embedded again for a promoted model
        enrolled = work.enrolled_for(model)
        vectors += enrolled.count(case_id)
        enrolled.delete_case(case_id)
    vectors += work.reference_hashes.count(case_id)  # issue 20: its reference PDQ hashes (their partition)
    work.reference_hashes.delete_case(case_id)
    bucket = work.settings.minio.buckets.references.name
    objects = 0
    for obj in work.objects.list_objects(bucket, prefix=f"cases/{case_id}/", recursive=True):
        work.objects.remove_object(bucket, obj.object_name)
        objects += 1
    with work.sessions.begin() as session:
        case = get_case(session, case_id)
        photos, matches = len(case.photos), len(case.matches)
        closed = takedowns.close_for_withdrawal(session, work, actor, case_id)
        session.delete(case)  # consents, photos and matches go with it (cascade)
        report = WithdrawalReport(case_id, vectors, objects, photos, matches, closed.takedowns)
        record(work.sessions, actor, "withdraw", session=session, attempt=attempt, **report.to_dict())
    return report
