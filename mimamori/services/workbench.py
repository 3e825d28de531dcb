"""What the workbench's case and search pages read that no other service offers.

The list of the cases a staff member may see (with counts), a case's consent record and
enrolled photos, which of a search's faces are matches of visible cases, and the face image
of a search result (an indexed face that may not be a match): blurred like every image a
reviewer sees, the original only on a reveal, which is audited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from mimamori.core.errors import Forbidden, NotFound, TooLarge
from mimamori.media.decode import MediaError
from mimamori.services import cases as case_service
from mimamori.services.access import require_case_access, visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.review_images import MAX_CROP_BYTES, View, safe_image
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Case, Consent, EnrolledPhoto, Match, consent_in_force, utcnow
from mimamori.stores.objects import read_media_object


@dataclass(frozen=True)
class CaseRow:
    id: str
    display_name: str
    created_at: dt.datetime
    photos: int
    pending: int
    matches: int


@dataclass(frozen=True)
class ConsentView:
    given_by: str
    relationship_to_client: str
    given_at: dt.datetime
    scope: list[str]
    expires_at: dt.datetime | None
    recorded_by: str
    recorded_at: dt.datetime
    in_force: bool


@dataclass(frozen=True)
class PhotoView:
    id: int
    sha256: str
    enrolled_at: dt.datetime
    enrolled_by: str


@dataclass(frozen=True)
class CaseRecord:
    case: case_service.CaseSummary
    threshold: float
    consents: list[ConsentView]  # newest first
    photos: list[PhotoView]


def list_cases(work: Workspace, actor: Actor) -> list[CaseRow]:
    """The cases ``actor`` may see, newest first, with their photo and match counts (audited)."""
    with work.sessions() as session:
        visible = visible_case_ids(session, actor)
        query = select(Case).order_by(Case.created_at.desc(), Case.id)
        if visible is not None:
            query = query.where(Case.id.in_(sorted(visible)))
        found = list(session.scalars(query))
        ids = [c.id for c in found]
        photos = dict(session.execute(select(EnrolledPhoto.case_id, func.count()).where(EnrolledPhoto.case_id.in_(ids))
                                      .group_by(EnrolledPhoto.case_id)).all())
        counts: dict[str, dict[str, int]] = {}
        for case_id, status, count in session.execute(select(Match.case_id, Match.status, func.count())
                                                      .where(Match.case_id.in_(ids))
                                                      .group_by(Match.case_id, Match.status)):
            counts.setdefault(case_id, {})[status] = count
        rows = [CaseRow(c.id, c.display_name, c.created_at, photos.get(c.id, 0),
                        counts.get(c.id, {}).get("pending_review", 0), sum(counts.get(c.id, {}).values()))
                for c in found]
    record(work.sessions, actor, "list_cases", result_count=len(rows))
    return rows


def case_exists(work: Workspace, case_id: str) -> bool:
    """Whether a case of this id is in the database (the cases page says a withdrawal only of one that is not)."""
    with work.sessions() as session:
        return session.get(Case, case_id) is not None


def case_record(work: Workspace, actor: Actor, case_id: str) -> CaseRecord:
    """A case with its consent record and enrolled photos (cases.view_case: access checked, audited)."""
    summary = case_service.view_case(work, actor, case_id)
    now = utcnow()
    with work.sessions() as session:
        case = session.get(Case, case_id)
        if case is None:  # withdrawn since
            raise NotFound("unknown_case", f"no case {case_id}")
        threshold = case_service.threshold(work, case)
        consents = [ConsentView(c.given_by, c.relationship_to_client, c.given_at, list(c.scope), c.expires_at,
                                c.recorded_by, c.recorded_at, consent_in_force(c, now))
                    for c in session.scalars(select(Consent).where(Consent.case_id == case_id)
                                             .order_by(Consent.recorded_at.desc()))]
        photos = [PhotoView(p.id, p.sha256, p.enrolled_at, p.enrolled_by)
                  for p in session.scalars(select(EnrolledPhoto).where(EnrolledPhoto.case_id == case_id)
                                           .order_by(EnrolledPhoto.id))]
    return CaseRecord(summary, threshold, consents, photos)


def matches_of_faces(work: Workspace, actor: Actor, face_ids: set[int]) -> dict[int, list[tuple[int, str]]]:
    """For each face, the (match id, case id) of its matches in the cases ``actor`` may see."""
    if not face_ids:
        return {}
    with work.sessions() as session:
        query = select(Match.face_id, Match.id, Match.case_id).where(Match.face_id.in_(sorted(face_ids)))
        visible = visible_case_ids(session, actor)
        if visible is not None:
            query = query.where(Match.case_id.in_(sorted(visible)))
        found: dict[int, list[tuple[int, str]]] = {}
        for face_id, match_id, case_id in session.execute(query.order_by(Match.id)):
            found.setdefault(face_id, []).append((match_id, case_id))
    return found


def indexed_face_image(work: Workspace, actor: Actor, face_id: int, view: View, reveal: bool = False) -> bytes:
    """An indexed face's crop (a search result), blurred unless revealed.

    Admins may see any indexed face; a reviewer only a face that is a match of one of their
    cases (what their search shows them); an auditor none.
    """
    target = f"face:{face_id}"
    with refusals_audited(work.sessions, actor, "reveal" if reveal else "view_image", target=target,
                          image="indexed_face"):
        case_id = None
        with work.sessions() as session:
            if visible_case_ids(session, actor) is not None:
                matched = session.scalars(select(Match.case_id).where(Match.face_id == face_id)
                                          .order_by(Match.id)).all()
                allowed = [c for c in matched if c in visible_case_ids(session, actor)]
                if not allowed:
                    raise Forbidden("not_assigned", "this face is not a match of a case assigned to you")
                case_id = allowed[0]
                require_case_access(session, actor, case_id)
        face = work.searcher.faces_by_id({face_id}).get(face_id)
        if face is None:
            raise NotFound("face_missing", f"face {face_id} is not in the index")
        try:
            data = read_media_object(work.objects, work.settings.minio.buckets.crops.name, face.crop_key,
                                     MAX_CROP_BYTES)
        except MediaError as error:
            if error.reason == "file_too_large":
                raise TooLarge("image_too_large", str(error)) from None
            raise NotFound("image_missing", "the face image is not in the object store") from None
        if not reveal:
            return safe_image(data, view.blur_radius, view.greyscale)
    record(work.sessions, actor, "reveal", case_id=case_id, target=target, image="indexed_face")
    return data
