"""Per-case models: train a case's head from its faces and its reviewers' decisions, apply it, keep versions.

Training (``train``) takes as positives the case's enrolled faces and the faces of its confirmed
matches; as hard negatives the indexed faces nearest the case's prototype that are no match of the
case (one Milvus search, then one query for their vectors), and the faces of its rejected matches,
which count more (models/case_head.py). Each training is a new version: weights in the references
bucket under the case's prefix (so withdrawal's deletion of ``cases/<id>/`` takes them), a
``case_models`` row, and an audit row, the last two in one transaction.

When to train: after reviewer decisions (``after_decisions``, called by matches.record_decisions
once a decision is committed) as soon as ``case_models.retrain_after`` new confirms or rejects
have come in since the last version (default 1: a training is one index query and milliseconds of
numpy, and a reviewer's next candidate should already be scored by what they just decided), and
by hand (``mimamori cases train-model``). A failed automatic training never undoes the decision;
it is logged and counted, and the next decision or the command retries.

Applying it: after each training the case's open matches are scored again (``case_score``); the
watchlist scores each new face of a watched case with the case's current head
(services/case_heads.py) and takes a face under the case threshold when the head accepts it. The
base similarity stays on every match as evidence.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mimamori.core import metrics
from mimamori.core.errors import InvalidInput, PhotoRejected
from mimamori.models.case_head import CaseHead, HeadSettings, TrainingReport, prototype_of, train_case_head
from mimamori.services import cases
from mimamori.services.access import require_case_access
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.consent import ENROLMENT_SCOPES, active_consent, require_consent
from mimamori.services.enrolment import case_vectors
from mimamori.services.workspace import Workspace, model_of_version
from mimamori.stores.case_models import CaseModel
from mimamori.stores.cases import EnrolledPhoto, Match, MatchDecision, get_case

log = logging.getLogger(__name__)

OPEN_STATUSES = ("pending_review", "unsure")
# Who trains after decisions: the service itself (the audit row names the reviewer who triggered it).
TRAINER = Actor("mimamori:case-models", "operator")
LEARNED_DECISIONS = ("confirmed", "rejected")


@dataclass(frozen=True)
class TrainingResult:
    case_id: str
    version: int
    threshold: float
    base_threshold: float
    report: dict
    rescored: int  # open matches scored again


def head_settings(work: Workspace) -> HeadSettings:
    config = work.settings.case_models
    return HeadSettings(max_lowering=config.max_lowering, margin=config.margin)


def weights_key(case_id: str, version: int) -> str:
    return f"cases/{case_id}/models/v{version}.npz"


def decisions_count(session: Session, case_id: str) -> int:
    """Confirms and rejects in the case's decision log (only grows: a changed mind is one more)."""
    return session.scalar(select(func.count()).select_from(MatchDecision).where(
        MatchDecision.case_id == case_id, MatchDecision.decision.in_(LEARNED_DECISIONS))) or 0


def enrolled_version(session: Session, work: Workspace, case_id: str) -> str:
    """The version of the configured model the case's enrolled vectors (and so its head) are of."""
    for version in session.scalars(select(EnrolledPhoto.model_version).where(EnrolledPhoto.case_id == case_id)
                                   .order_by(EnrolledPhoto.id.desc())):
        if model_of_version(version) in (work.model, None):
            return version
    raise PhotoRejected("nothing_enrolled", f"case {case_id} has no enrolled photo yet")


def latest(session: Session, case_id: str) -> CaseModel | None:
    return session.scalars(select(CaseModel).where(CaseModel.case_id == case_id)
                           .order_by(CaseModel.version.desc()).limit(1)).first()


def train(work: Workspace, actor: Actor, case_id: str) -> TrainingResult:
    """Train the case's next head version by hand (``mimamori cases train-model``); refusals audited."""
    with refusals_audited(work.sessions, actor, "train_case_model", case_id=case_id):
        if not work.settings.case_models.enabled:
            raise InvalidInput("case_models_disabled", "per-case models are turned off (case_models.enabled)")
        with work.sessions() as session:
            require_case_access(session, actor, case_id)
            get_case(session, case_id)
            require_consent(session, case_id, ENROLMENT_SCOPES, "training the case's model")
        return _train(work, actor, case_id, "manual")


def _train(work: Workspace, actor: Actor, case_id: str, reason: str, triggered_by: str | None = None
           ) -> TrainingResult:
    """Train, store and audit the next version (the row and its audit row in one transaction), then
    score the case's candidates with it."""
    with work.sessions() as session:
        base_threshold = cases.threshold(work, get_case(session, case_id))
        labelled = {m.face_id: m.status for m in session.scalars(select(Match).where(Match.case_id == case_id))}
        decisions = decisions_count(session, case_id)
        base_version = enrolled_version(session, work, case_id)
    enrolled = case_vectors(work, case_id, work.model)
    head, report = _fit(work, enrolled, labelled, base_threshold)
    data = head.to_bytes()
    with work.sessions.begin() as session:
        previous = latest(session, case_id)
        version = (previous.version if previous else 0) + 1
        key = weights_key(case_id, version)
        # Weights first: a row never points to weights that are not there (a crash leaves an unused object,
        # under the case's prefix, which the next training of this version number overwrites).
        work.objects.put_object(work.settings.minio.buckets.references.name, key, io.BytesIO(data), len(data),
                                content_type="application/octet-stream")
        session.add(CaseModel(case_id=case_id, version=version, base_model_version=base_version,
                              object_key=key, weights_sha256=hashlib.sha256(data).hexdigest(),
                              threshold=head.threshold, base_threshold=base_threshold, floor=head.floor,
                              positives=report.positives, negatives=report.negatives, rejected=report.rejected,
                              decisions=decisions, reason=reason, trained_by=actor.name, report=report.to_dict()))
        record(work.sessions, actor, "train_case_model", case_id=case_id, target=f"case_model:{version}",
               session=session, reason=reason, **({"triggered_by": triggered_by} if triggered_by else {}),
               **report.to_dict())
    metrics.CASE_MODEL_TRAININGS.labels(reason=reason, outcome="ok").inc()
    return TrainingResult(case_id, version, head.threshold, base_threshold, report.to_dict(),
                          rescore(work, case_id, version, head))


def _fit(work: Workspace, enrolled: np.ndarray, labelled: dict[int, str], base_threshold: float
         ) -> tuple[CaseHead, TrainingReport]:
    """Positives, hard negatives and rejects from the index, then the head."""
    searcher = work.searcher_for(work.model)
    decided = [face_id for face_id, status in labelled.items() if status in LEARNED_DECISIONS]
    vectors = searcher.vectors_of(decided) if decided else {}
    confirmed = [vectors[f] for f in decided if labelled[f] == "confirmed" and f in vectors]
    rejected = [vectors[f] for f in decided if labelled[f] == "rejected" and f in vectors]
    positives = np.vstack([enrolled, *confirmed]) if confirmed else enrolled
    wanted = work.settings.case_models.hard_negatives
    hits, found = searcher.nearest_with_vectors(prototype_of(positives), wanted + len(labelled))
    # Hard negatives: the nearest faces that are no match of the case (its matches may be the client;
    # the rejected ones come in below with a reviewer's label).
    keep = [i for i, hit in enumerate(hits) if hit.face_id not in labelled][:wanted]
    negatives = found[keep] if keep else np.zeros((0, positives.shape[1]), dtype=np.float32)
    return train_case_head(positives, negatives, np.array(rejected) if rejected else None,
                           base_threshold=base_threshold, settings=head_settings(work))


def rescore(work: Workspace, case_id: str, version: int, head: CaseHead) -> int:
    """Score the case's open matches with ``head`` (``case_score``, ``case_model_version``); returns how many.

    Faces already in the index that are no match of the case were the head's hard negatives (taken
    for other people), so it is not asked about them again: what it can take under the case
    threshold comes next, through the watchlist.
    """
    with work.sessions() as session:
        open_matches = {m.face_id: m.id for m in session.scalars(select(Match).where(
            Match.case_id == case_id, Match.status.in_(OPEN_STATUSES)))}
    vectors = work.searcher_for(work.model).vectors_of(set(open_matches)) if open_matches else {}
    with work.sessions.begin() as session:
        for face_id, vector in vectors.items():
            session.execute(update(Match).where(Match.id == open_matches[face_id])
                            .values(case_score=float(head.score(vector[None, :])[0]), case_model_version=version)
                            .execution_options(synchronize_session=False))
    return len(vectors)


def after_decisions(work: Workspace, actor: Actor, case_ids: set[str]) -> list[TrainingResult]:
    """Retrain the cases that have ``retrain_after`` new confirms or rejects since their last version.

    Called by matches.record_decisions once decisions are committed. A case that cannot have a model
    now (nothing enrolled, no consent in force covering search or watchlist) is left alone; a training
    that fails (a store down) is logged and counted. Neither undoes the decision, and the next decision
    or ``mimamori cases train-model`` retries.
    """
    config = work.settings.case_models
    if not config.enabled:
        return []
    trained = []
    for case_id in sorted(case_ids):
        with work.sessions() as session:
            previous = latest(session, case_id)
            due = decisions_count(session, case_id) - (previous.decisions if previous else 0) >= config.retrain_after
            able = due and active_consent(session, case_id, ENROLMENT_SCOPES) is not None and \
                session.scalars(select(EnrolledPhoto.id).where(EnrolledPhoto.case_id == case_id)).first() is not None
        if not able:
            continue
        try:
            trained.append(_train(work, TRAINER, case_id, "decisions", triggered_by=actor.name))
        except Exception:  # a store down, or the case withdrawn meanwhile: the decision stands
            log.exception("case %s: training its model after decisions failed", case_id)
            metrics.CASE_MODEL_TRAININGS.labels(reason="decisions", outcome="failed").inc()
    return trained


@dataclass(frozen=True)
class CaseModelView:
    case_id: str
    version: int
    trained_at: str
    trained_by: str
    reason: str
    threshold: float
    base_threshold: float
    positives: int
    negatives: int
    rejected: int
    decisions: int

    @classmethod
    def of(cls, row: CaseModel) -> CaseModelView:
        return cls(row.case_id, row.version, row.trained_at.isoformat(), row.trained_by, row.reason, row.threshold,
                   row.base_threshold, row.positives, row.negatives, row.rejected, row.decisions)


def versions(work: Workspace, actor: Actor, case_id: str) -> list[CaseModelView]:
    """Every trained version of the case's head, newest first (no weights); audited."""
    with refusals_audited(work.sessions, actor, "view_case_models", case_id=case_id), work.sessions() as session:
        require_case_access(session, actor, case_id)
        get_case(session, case_id)
        rows = [CaseModelView.of(r) for r in session.scalars(
            select(CaseModel).where(CaseModel.case_id == case_id).order_by(CaseModel.version.desc()))]
    record(work.sessions, actor, "view_case_models", case_id=case_id, result_count=len(rows))
    return rows
