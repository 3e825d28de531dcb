"""Enrolment: a client's reference photos become enrolled faces, with a retro search of the past.

Reference photos go through the same detect -> align -> embed code as the pipeline
(models.face_encoder), so an enrolled face and an indexed face of the same person get
comparable vectors. Enrolment needs a consent in force covering search or watchlist; when
it covers search, a retro search over everything already indexed creates the matches that
existed before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import or_, select, update

from mimamori.core.errors import PhotoRejected
from mimamori.media.decode import MediaError, decode_media
from mimamori.services import cases
from mimamori.services.audit import Actor, begin_attempt, record, refusals_audited
from mimamori.services.consent import ENROLMENT_SCOPES, ConsentRecord, active_consent, record_consent, require_consent
from mimamori.services.watchlist import record_matches
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Case, EnrolledPhoto, get_case, utcnow

if TYPE_CHECKING:  # torch: imported when the first face is encoded, not when the API starts
    from mimamori.models.face_encoder import EncodedFace

# (file name, bytes, content type) of an uploaded photo
Photo = tuple[str, bytes, str]


@dataclass
class EnrolmentResult:
    case_id: str
    photos: list[str] = field(default_factory=list)  # sha256 of each enrolled photo
    retro_matches: int = 0


def face_of_photo(work: Workspace, photo: Photo, model: str | None = None) -> tuple[str, EncodedFace]:
    """The single face of a photo, embedded by ``model`` (default: the configured one), or a refusal."""
    name, data, content_type = photo
    try:
        media = decode_media(data, content_type, work.settings.pipeline)
    except MediaError as error:
        raise PhotoRejected(error.reason, f"{name}: {error}") from None
    if media.kind != "image":
        raise PhotoRejected("not_a_photo", f"{name}: enrol photos, not videos")
    faces = work.encoder_for(model).encode(media.frames[0].image)
    if not faces:
        raise PhotoRejected("no_face", f"{name}: no face found; use a photo where the face is clearly visible")
    if len(faces) > 1:
        raise PhotoRejected("several_faces", f"{name}: {len(faces)} faces found; use a photo of the client alone")
    return media.sha256, faces[0]


def enroll(work: Workspace, actor: Actor, case_id: str, photos: list[Photo],
           consent: ConsentRecord | None = None) -> EnrolmentResult:
    """Enrol reference photos; every one must show exactly one face, or none is enrolled."""
    with refusals_audited(work.sessions, actor, "enroll", case_id=case_id):
        if consent is not None:
            record_consent(work, actor, case_id, consent)
        with work.sessions() as session:
            get_case(session, case_id)
            require_consent(session, case_id, ENROLMENT_SCOPES, "enrolling photos")
            retro = active_consent(session, case_id, "search") is not None
        if not photos:
            raise PhotoRejected("no_photo", "no photo given")
        # Check every photo before storing any: a request is enrolled whole or not at all.
        faces = [(photo, *face_of_photo(work, photo)) for photo in photos]
        # Vectors in Milvus and photos in MinIO are not the database's: on record before they are stored.
        attempt = begin_attempt(work.sessions, actor, "enroll", case_id=case_id, photos=len(photos))
        result = EnrolmentResult(case_id, [_store(work, actor, case_id, photo, sha, face)
                                           for photo, sha, face in faces])
        if retro:
            result.retro_matches = retro_search(work, case_id, np.stack([face.vector for *_, face in faces]))
    record(work.sessions, actor, "enroll", case_id=case_id, result_count=result.retro_matches,
           photos=len(result.photos), attempt=attempt)
    return result


def _store(work: Workspace, actor: Actor, case_id: str, photo: Photo, sha: str, face: EncodedFace) -> str:
    """The photo and its aligned crop in the object store, its vector in Milvus, its row: idempotent."""
    _name, data, content_type = photo
    bucket = work.settings.minio.buckets.references.name
    version = work.encoder_for().version
    photo_key, crop_key = f"cases/{case_id}/photos/{sha}", f"cases/{case_id}/crops/{sha}.jpg"
    work.objects.put_object(bucket, photo_key, io.BytesIO(data), len(data), content_type=content_type)
    crop = io.BytesIO()
    face.aligned.save(crop, "JPEG", quality=90)
    work.objects.put_object(bucket, crop_key, io.BytesIO(crop.getvalue()), crop.tell(), content_type="image/jpeg")
    face_id = add_enrolled_face(work, case_id, sha, face.vector)
    with work.sessions.begin() as session:
        exists = session.scalars(select(EnrolledPhoto).where(
            EnrolledPhoto.case_id == case_id, EnrolledPhoto.sha256 == sha,
            EnrolledPhoto.model_version == version)).first()
        if exists is None:
            session.add(EnrolledPhoto(case_id=case_id, sha256=sha, object_key=photo_key, crop_key=crop_key,
                                      face_id=face_id, model_version=version, enrolled_by=actor.name))
    return sha


def add_enrolled_face(work: Workspace, case_id: str, sha: str, vector: np.ndarray, model: str | None = None) -> int:
    """A face vector of the case in ``model``'s enrolled collection (idempotent), then the moment Milvus
    acknowledged it on the case: the watchlist's search sees every write up to ``Case.faces_written_at``.

    The time only moves forward: of two writes noted at once, the later moment stays, whichever commits
    last (a conditional UPDATE, not a read then a write)."""
    face_id = work.enrolled_for(model).add(case_id, sha, work.encoder_for(model).version, vector)
    now = utcnow()
    with work.sessions.begin() as session:
        get_case(session, case_id)
        session.execute(update(Case).where(Case.id == case_id, or_(Case.faces_written_at.is_(None),
                                                                  Case.faces_written_at < now))
                        .values(faces_written_at=now))
    return face_id


def case_vectors(work: Workspace, case_id: str, model: str | None = None) -> np.ndarray:
    """The case's enrolled vectors of ``model``; reference photos are embedded again for a new model."""
    with work.sessions() as session:
        photos = list(get_case(session, case_id).photos)
    enrolled = work.enrolled_for(model)
    vectors = enrolled.vectors(case_id)
    if len(vectors) == 0 and photos and model not in (None, work.model):
        bucket = work.settings.minio.buckets.references.name
        for photo in {p.sha256: p for p in photos}.values():
            data = work.objects.get_object(bucket, photo.object_key).read()
            _sha, face = face_of_photo(work, (photo.object_key, data, "image/jpeg"), model)
            add_enrolled_face(work, case_id, photo.sha256, face.vector, model)
        vectors = enrolled.vectors(case_id)
    if len(vectors) == 0:
        raise PhotoRejected("nothing_enrolled", f"case {case_id} has no enrolled photo yet")
    return vectors


def retro_search(work: Workspace, case_id: str, vectors: np.ndarray) -> int:
    """Matches among the faces indexed before the enrolment; returns how many are new.

    ``vectors`` come from the configured model, so the search reads that model's face
    collection (not the search alias, which may point to another model), and it takes every
    face at or above the case's threshold (a range search), however many re-uploads there are.
    """
    with work.sessions() as session:
        threshold = cases.threshold(work, get_case(session, case_id))
    searcher = work.searcher_for(work.model)
    found: dict[int, tuple[float, str]] = {}
    for hits in searcher.faces_above(vectors, threshold):
        for hit in hits:
            if hit.similarity > found.get(hit.face_id, (-1.0, ""))[0]:
                found[hit.face_id] = (hit.similarity, hit.media_sha256)
    candidates = [(case_id, face_id, sha, similarity) for face_id, (similarity, sha) in found.items()]
    # The media's pHash (for the queue's near-duplicate clusters), as a stream match has it: the
    # hits do not carry it, one query of the model's media collection by sha256 does.
    phashes = searcher.media_phashes({sha for _similarity, sha in found.values()}) if found else {}
    return len(record_matches(work.sessions, candidates, work.encoder_for().version, "retro", media_phash=phashes))
