"""Reference media: a case's known images and videos (the leaked originals), kept as what matching needs.

Enrolling a reference (``mimamori references add``, ``POST /cases/{id}/references``) needs
the same consent as enrolling a photo (search or watchlist). Each image, or each frame a video
is sampled at (the pipeline's own decoder and sampling), is hashed with PDQ in its eight
dihedral variants (mirrors, 90/180/270° rotations) into the case's partition of the reference
collection; an image with exactly one face also gives an enrolled face vector (the client's;
with several faces none is taken, since the others are not the client); a small blurred
thumbnail is kept for the reviewer, and, while ``matching.local_features`` is on, an image's ORB
keypoints (services/reference_features.py: the crop signal, which no hash list carries). The
original is stored only when the organisation turned ``keep_reference_originals`` on. When the
consent covers search, the face vectors and then the hashes are searched against everything
indexed before (a retro search, as at photo enrolment; a face match of the same media then gains
the PDQ evidence).

Hash lists: a case's hashes export in the formats ThreatExchange and HMA read
(services/hash_lists.py; needs consent for takedown, since the list leaves the organisation), and
a partner's list imports as references of the case (hashes only; there is no image).

Withdrawal (services/cases.withdraw) drops the case's partition, its objects under
``cases/<id>/`` and, with the case row, its reference rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from mimamori.core.errors import PhotoRejected
from mimamori.media import local_features
from mimamori.media.decode import MediaError, decode_media
from mimamori.media.pdq import DIHEDRAL, PdqHash, pdq_dihedral
from mimamori.services.access import require_case_access
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.consent import ENROLMENT_SCOPES, active_consent, require_consent
from mimamori.services.enrolment import add_enrolled_face, retro_search
from mimamori.services.hash_lists import ListedHash, format_hash_list, parse_hash_list
from mimamori.services.image_matches import HashCandidate, hash_thresholds, record_hash_candidates
from mimamori.services.match_signals import PdqScore, combine
from mimamori.services.reference_features import store_features
from mimamori.services.review_images import safe_image
from mimamori.services.users import organisation_settings
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import get_case, utcnow
from mimamori.stores.image_hashes import ReferenceHash
from mimamori.stores.references import ReferenceMedia

# (file name, bytes, content type) of an upload, as enrolment takes photos
Upload = tuple[str, bytes, str]
# An imported hash of unknown quality is trusted: the scraped frame's own quality still gates it.
IMPORTED_QUALITY = 100


@dataclass(frozen=True)
class ReferenceView:
    id: int
    sha256: str
    kind: str
    label: str | None
    frames: int
    hashes: int
    min_quality: int | None
    face_vectors: int
    original_kept: bool
    added_at: dt.datetime

    @classmethod
    def of(cls, row: ReferenceMedia) -> ReferenceView:
        return cls(row.id, row.sha256, row.kind, row.label, row.frames, row.hashes, row.min_quality,
                   row.face_vectors, row.original_key is not None, row.added_at)


@dataclass
class ReferenceResult:
    case_id: str
    references: list[ReferenceView] = field(default_factory=list)
    retro_matches: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # an imported list's other signal types


@dataclass(frozen=True)
class _Decoded:
    name: str
    data: bytes
    content_type: str
    sha256: str
    kind: str
    frames: list[tuple[int, list[PdqHash]]]  # (frame ms, its eight dihedral hashes)
    first_frame: object  # PIL image of the first frame (thumbnail, face)

    def reference_hashes(self, case_id: str) -> list[ReferenceHash]:
        """Every dihedral hash of every frame, as the case's reference rows."""
        return [ReferenceHash(case_id, self.sha256, ms, variant, hashed)
                for ms, hashes in self.frames for variant, hashed in zip(DIHEDRAL, hashes, strict=True)]


def _may_enrol(work: Workspace, actor: Actor, case_id: str, doing: str) -> bool:
    """Refuse unless the actor may enrol references of the case under a consent in force; return
    whether that consent covers search (the new hashes are then searched in the past)."""
    with work.sessions() as session:
        require_case_access(session, actor, case_id)
        get_case(session, case_id)
        require_consent(session, case_id, ENROLMENT_SCOPES, doing)
        return active_consent(session, case_id, "search") is not None


def _decode(work: Workspace, upload: Upload) -> _Decoded:
    name, data, content_type = upload
    try:
        media = decode_media(data, content_type, work.settings.pipeline)
    except MediaError as error:
        raise PhotoRejected(error.reason, f"{name}: {error}") from None
    frames = [(frame.time_ms, pdq_dihedral(frame.image)) for frame in media.frames]
    floor = work.settings.matching.pdq_min_quality
    if all(hashes[0].quality < floor for _ms, hashes in frames):
        raise PhotoRejected("low_quality", f"{name}: too flat to hash reliably (PDQ quality under {floor} in "
                                           "every frame); a blank or near-uniform image would match many others")
    kind = "image" if media.kind == "image" else "video"
    return _Decoded(name, data, content_type, media.sha256, kind, frames, media.frames[0].image)


def add_references(work: Workspace, actor: Actor, case_id: str, uploads: list[Upload],
                   label: str | None = None) -> ReferenceResult:
    """Enrol reference images or videos; every upload is checked before any is stored."""
    with refusals_audited(work.sessions, actor, "add_reference", case_id=case_id):
        retro = _may_enrol(work, actor, case_id, "adding reference media")
        if not uploads:
            raise PhotoRejected("no_media", "no image or video given")
        decoded = [_decode(work, upload) for upload in uploads]
        keep_originals = bool(getattr(organisation_settings(work), "keep_reference_originals", False) is True)
        stored = [_store(work, actor, case_id, item, label, keep_originals) for item in decoded]
        result = ReferenceResult(case_id, [view for view, _vector in stored])
        if retro:  # faces first: a hash match of the same media then adds its evidence to the face match
            vectors = [vector for _view, vector in stored if vector is not None]
            faces = retro_search(work, case_id, np.stack(vectors)) if vectors else 0
            result.retro_matches = faces + retro_hash_search(work, case_id, [
                hashed for item in decoded for hashed in item.reference_hashes(case_id)])
    record(work.sessions, actor, "add_reference", case_id=case_id, result_count=result.retro_matches,
           references=len(stored), originals_kept=keep_originals)
    return result


def _store(work: Workspace, actor: Actor, case_id: str, item: _Decoded, label: str | None,
           keep_original: bool) -> tuple[ReferenceView, np.ndarray | None]:
    """Hashes, a face vector (one face only), a blurred thumbnail and, if kept, the original: idempotent.
    Returns the row's view and the face vector written, if any."""
    hashes = item.reference_hashes(case_id)
    work.reference_hashes.add(hashes)
    face_vectors, vector = 0, None
    if item.kind == "image":
        faces = work.encoder_for().encode(item.first_frame)
        if len(faces) == 1:
            vector = faces[0].vector
            add_enrolled_face(work, case_id, item.sha256, vector)
            face_vectors = 1
    bucket, prefix = work.settings.minio.buckets.references.name, f"cases/{case_id}/references/{item.sha256}"
    settings = work.settings.matching
    frame = io.BytesIO()
    item.first_frame.save(frame, "PNG")
    thumbnail = safe_image(frame.getvalue(), settings.reference_thumbnail_blur, greyscale=False,
                           max_side=settings.reference_thumbnail_px)
    thumbnail_key = f"{prefix}/thumbnail.jpg"
    work.objects.put_object(bucket, thumbnail_key, io.BytesIO(thumbnail), len(thumbnail), content_type="image/jpeg")
    if item.kind == "image" and settings.local_features:  # only when used: keypoints are partly invertible
        store_features(work.objects, bucket, case_id, item.sha256, local_features.extract_reference(item.first_frame))
    original_key = None
    if keep_original:
        original_key = f"{prefix}/original"
        work.objects.put_object(bucket, original_key, io.BytesIO(item.data), len(item.data),
                                content_type=item.content_type)
    qualities = [hashes[0].quality for _ms, hashes in item.frames]
    with work.sessions.begin() as session:
        row = session.scalars(select(ReferenceMedia).where(ReferenceMedia.case_id == case_id,
                                                           ReferenceMedia.sha256 == item.sha256)).first()
        if row is None:
            row = ReferenceMedia(case_id=case_id, sha256=item.sha256, added_by=actor.name)
            session.add(row)
        row.kind, row.label, row.frames, row.hashes = item.kind, label or row.label, len(item.frames), len(hashes)
        row.min_quality, row.face_vectors = min(qualities), max(face_vectors, row.face_vectors or 0)
        row.thumbnail_key, row.original_key = thumbnail_key, original_key or row.original_key
        row.hashes_written_at = utcnow()  # after the hashes' write returned: they are acknowledged
        session.flush()
        return ReferenceView.of(row), vector


def list_references(work: Workspace, actor: Actor, case_id: str) -> list[ReferenceView]:
    with refusals_audited(work.sessions, actor, "view_references", case_id=case_id), work.sessions() as session:
        require_case_access(session, actor, case_id)
        get_case(session, case_id)
        rows = [ReferenceView.of(r) for r in session.scalars(
            select(ReferenceMedia).where(ReferenceMedia.case_id == case_id).order_by(ReferenceMedia.id))]
    record(work.sessions, actor, "view_references", case_id=case_id, result_count=len(rows))
    return rows


def retro_hash_search(work: Workspace, case_id: str, references: list[ReferenceHash]) -> int:
    """Matches among the frames indexed before these references; returns how many are new.

    Such a match has no thumbnail (the scraped frame is not in memory here): the reviewer opens
    its media from the sightings.
    """
    matching = work.settings.matching
    usable = [r for r in references if r.hash.quality >= matching.pdq_min_quality]
    if not usable:
        return 0
    thresholds = hash_thresholds(matching)
    best: dict[str, tuple[int, int, int, str]] = {}  # media sha -> (distance, frame ms, quality, variant)
    for reference, hits in zip(usable, work.media_hashes.within([r.hash.bits for r in usable],
                                                                matching.pdq_max_distance), strict=True):
        for hit in hits:
            quality = min(hit.quality, reference.hash.quality)
            if hit.media_sha256 not in best or hit.distance < best[hit.media_sha256][0]:
                best[hit.media_sha256] = (hit.distance, hit.frame_ms, quality, reference.variant)
    candidates = []
    for sha, (distance, frame_ms, quality, variant) in sorted(best.items()):
        decision = combine(pdq=PdqScore(distance, quality, variant, frame_ms), thresholds=thresholds)
        if decision.matched:
            candidates.append(HashCandidate(case_id, sha, frame_ms, decision))
    return len(record_hash_candidates(work.sessions, candidates, "retro"))


def export_hash_list(work: Workspace, actor: Actor, case_id: str, fmt: str = "te") -> str:
    """The case's reference hashes as a ThreatExchange/HMA hash list: hashes and their quality, nothing else."""
    with refusals_audited(work.sessions, actor, "export_hashes", case_id=case_id):
        with work.sessions() as session:
            require_case_access(session, actor, case_id)
            get_case(session, case_id)
            require_consent(session, case_id, ("takedown",), "sharing the case's hashes with partners")
        hashes = work.reference_hashes.of_case(case_id)
        text = format_hash_list([ListedHash(h.hash.bits, h.hash.quality, h.variant, h.frame_ms) for h in hashes], fmt)
    record(work.sessions, actor, "export_hashes", case_id=case_id, result_count=len(hashes), format=fmt)
    return text


def import_hash_list(work: Workspace, actor: Actor, case_id: str, text: str, label: str | None = None
                     ) -> ReferenceResult:
    """A partner's hash list as references of the case (one reference row per list, by the list's sha256)."""
    with refusals_audited(work.sessions, actor, "import_hashes", case_id=case_id):
        retro = _may_enrol(work, actor, case_id, "importing hashes")
        parsed = parse_hash_list(text)
        if not parsed.hashes:
            raise PhotoRejected("no_hashes", "the list holds no PDQ hash")
        digest = hashlib.sha256(text.encode()).hexdigest()
        references = [ReferenceHash(case_id, digest, index, "imported",
                                    PdqHash(h.bits, IMPORTED_QUALITY if h.quality is None else h.quality))
                      for index, h in enumerate({h.bits: h for h in parsed.hashes}.values())]
        work.reference_hashes.add(references)
        with work.sessions.begin() as session:
            row = session.scalars(select(ReferenceMedia).where(ReferenceMedia.case_id == case_id,
                                                               ReferenceMedia.sha256 == digest)).first()
            if row is None:
                row = ReferenceMedia(case_id=case_id, sha256=digest, kind="hash_list", added_by=actor.name,
                                     face_vectors=0)
                session.add(row)
            row.label, row.frames, row.hashes = label or row.label, len(references), len(references)
            row.min_quality = min(r.hash.quality for r in references)
            row.hashes_written_at = utcnow()  # after the hashes' write returned: they are acknowledged
            session.flush()
            result = ReferenceResult(case_id, [ReferenceView.of(row)], skipped=parsed.skipped)
        if retro:
            result.retro_matches = retro_hash_search(work, case_id, references)
    record(work.sessions, actor, "import_hashes", case_id=case_id, result_count=result.retro_matches,
           hashes=len(references), skipped=sum(parsed.skipped.values()))
    return result
