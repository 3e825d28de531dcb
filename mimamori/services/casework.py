"""Cases: creation, consent, enrolment of reference photos, and withdrawal.

A client's reference photos go through the same detect -> align -> embed code as the
pipeline (models.face_encoder), so an enrolled face and an indexed face of the same person
get comparable vectors. Enrolment needs a consent record that is in force; on enrolment a
retro search over everything already indexed creates the matches that existed before.
Withdrawal deletes the case's vectors, reference photos and crops, and rows; the audit log
keeps a tombstone without biometric data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymilvus import utility
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mimamori.core.config import Settings
from mimamori.core.errors import CaseExists, ConsentMissing, MimamoriError, PhotoRejected, UnknownCase
from mimamori.media.decode import MediaError, decode_media
from mimamori.models.registry import EMBEDDERS, embedder_spec
from mimamori.services import audit
from mimamori.services.audit import Actor
from mimamori.stores.cases import Case, Consent, EnrolledPhoto, case_threshold, consent_in_force, open_database, utcnow
from mimamori.stores.enrolled import EnrolledFaces
from mimamori.stores.milvus import connect
from mimamori.stores.objects import ensure_bucket, object_client

Scope = Literal["search", "watchlist", "takedown"]
# Enrolled vectors exist only to be searched for or watched for: a consent that covers neither
# (takedown only) does not allow storing them. The retro search at enrolment is a search of
# what was indexed before, so it runs only when the consent covers "search".
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


@dataclass
class EnrolmentResult:
    case_id: str
    photos: list[str] = field(default_factory=list)  # sha256 of each enrolled photo
    retro_matches: int = 0


@dataclass
class WithdrawalReport:
    case_id: str
    vectors: int
    objects: int
    photos: int
    matches: int


class Casework:
    """Case actions against the real stores; the API and the CLI both call this."""

    def __init__(self, settings: Settings, sessions: sessionmaker | None = None):
        self.settings = settings
        self.sessions = sessions or open_database(settings.database_url())
        self._encoders: dict[str, object] = {}
        self._enrolled: dict[str, EnrolledFaces] = {}
        self._objects = None

    # -- lazily built clients (the API starts without loading models) ---------------------------
    def encoder_for(self, model: str | None = None):
        """The detect-align-embed path for a model (default: the configured one), built once."""
        model = model or self.settings.models.embedder.name
        if model not in self._encoders:
            from mimamori.core.config import EmbedderConfig
            from mimamori.models.face_encoder import FaceEncoder

            config = self.settings.models.embedder
            if model != config.name:
                config = EmbedderConfig(name=model, allow_random_weights=config.allow_random_weights)
            self._encoders[model] = FaceEncoder(self.settings, config)
        return self._encoders[model]

    @property
    def encoder(self):
        return self.encoder_for()

    def enrolled_for(self, model: str | None = None) -> EnrolledFaces:
        model = model or self.settings.models.embedder.name
        if model not in self._enrolled:
            self._enrolled[model] = EnrolledFaces(self.settings, model)
        return self._enrolled[model]

    @property
    def enrolled(self) -> EnrolledFaces:
        return self.enrolled_for()

    @property
    def objects(self):
        if self._objects is None:
            self._objects = object_client(self.settings)
            ensure_bucket(self._objects, self.settings.minio.buckets.references)
        return self._objects

    # -- cases and consent ------------------------------------------------------------------------
    def create_case(self, actor: Actor, case_id: str, display_name: str, match_threshold: float | None = None
                    ) -> Case:
        with self.sessions.begin() as session:
            if session.get(Case, case_id) is not None:
                raise CaseExists("case_exists", f"case {case_id} already exists")
            case = Case(id=case_id, display_name=display_name, match_threshold=match_threshold,
                        threshold_model=self.settings.models.embedder.name if match_threshold is not None else None,
                        created_by=actor.name)
            session.add(case)
        audit.record(self.sessions, actor, "create_case", case_id=case_id)
        return case

    def get_case(self, session: Session, case_id: str) -> Case:
        case = session.get(Case, case_id)
        if case is None:
            raise UnknownCase("unknown_case", f"no case {case_id}")
        return case

    def record_consent(self, actor: Actor, case_id: str, consent: ConsentRecord) -> None:
        with self.sessions.begin() as session:
            self.get_case(session, case_id)
            session.add(Consent(case_id=case_id, **consent.model_dump()))
        audit.record(self.sessions, actor, "record_consent", case_id=case_id, scope=list(consent.scope))

    def active_consent(self, session: Session, case_id: str, scope: str | tuple[str, ...] | None = None
                       ) -> Consent | None:
        """The newest consent in force for the case that covers ``scope`` (any of a tuple), if any."""
        now = utcnow()
        consents = session.scalars(select(Consent).where(Consent.case_id == case_id)
                                   .order_by(Consent.recorded_at.desc()))
        return next((c for c in consents if consent_in_force(c, now, scope)), None)

    def require_consent(self, session: Session, case_id: str, scopes: tuple[str, ...], doing: str) -> Consent:
        """The consent in force that covers one of ``scopes``, or a refusal that says what is wrong:
        no consent recorded (``consent_missing``), every one expired (``consent_expired``), or none
        in force covering the scope (``consent_out_of_scope``)."""
        consent = self.active_consent(session, case_id, scopes)
        if consent is not None:
            return consent
        wanted = " or ".join(scopes)
        if session.scalars(select(Consent.id).where(Consent.case_id == case_id)).first() is None:
            raise ConsentMissing("consent_missing", f"case {case_id} has no consent on record: record the client's "
                                                    f"consent (covering {wanted}) before {doing}")
        if self.active_consent(session, case_id) is None:
            raise ConsentMissing("consent_expired", f"the consent of case {case_id} has expired: record the client's "
                                                    f"renewed consent (covering {wanted}) before {doing}")
        raise ConsentMissing("consent_out_of_scope", f"the consent in force for case {case_id} does not cover "
                                                     f"{wanted}, which {doing} needs")

    # -- enrolment --------------------------------------------------------------------------------
    def face_of_photo(self, name: str, data: bytes, content_type: str, model: str | None = None):
        """The single face of a photo, embedded by ``model`` (default: the configured one), or a refusal."""
        try:
            media = decode_media(data, content_type, self.settings.pipeline)
        except MediaError as error:
            raise PhotoRejected(error.reason, f"{name}: {error}") from None
        if media.kind != "image":
            raise PhotoRejected("not_a_photo", f"{name}: enrol photos, not videos")
        frame = media.frames[0].image
        faces = self.encoder_for(model).encode(frame)
        if not faces:
            raise PhotoRejected("no_face", f"{name}: no face found; use a photo where the face is clearly visible")
        if len(faces) > 1:
            raise PhotoRejected("several_faces", f"{name}: {len(faces)} faces found; use a photo of the client alone")
        return media.sha256, faces[0]

    def enroll(self, actor: Actor, case_id: str, photos: list[tuple[str, bytes, str]],
               consent: ConsentRecord | None = None) -> EnrolmentResult:
        """Enrol (name, bytes, content type) reference photos; every one must show exactly one face."""
        try:
            result = self._enroll(actor, case_id, photos, consent)
        except MimamoriError as error:
            audit.record(self.sessions, actor, "enroll", case_id=case_id, outcome="rejected", reason=error.reason)
            error.audited = True
            raise
        audit.record(self.sessions, actor, "enroll", case_id=case_id, result_count=result.retro_matches,
                     photos=len(result.photos))
        return result

    def _enroll(self, actor: Actor, case_id: str, photos: list[tuple[str, bytes, str]],
                consent: ConsentRecord | None) -> EnrolmentResult:
        if consent is not None:
            self.record_consent(actor, case_id, consent)
        with self.sessions() as session:
            self.get_case(session, case_id)
            self.require_consent(session, case_id, ENROLMENT_SCOPES, "enrolling photos")
            retro = self.active_consent(session, case_id, "search") is not None
        if not photos:
            raise PhotoRejected("no_photo", "no photo given")
        # Check every photo before storing any: a request is enrolled whole or not at all.
        faces = [(name, data, content_type, *self.face_of_photo(name, data, content_type))
                 for name, data, content_type in photos]
        bucket = self.settings.minio.buckets.references.name
        version = self.encoder.version
        result = EnrolmentResult(case_id)
        for _name, data, content_type, sha, face in faces:
            photo_key = f"cases/{case_id}/photos/{sha}"
            crop_key = f"cases/{case_id}/crops/{sha}.jpg"
            self.objects.put_object(bucket, photo_key, io.BytesIO(data), len(data), content_type=content_type)
            crop = io.BytesIO()
            face.aligned.save(crop, "JPEG", quality=90)
            self.objects.put_object(bucket, crop_key, io.BytesIO(crop.getvalue()), crop.tell(),
                                    content_type="image/jpeg")
            face_id = self.enrolled.add(case_id, sha, version, face.vector)
            with self.sessions.begin() as session:
                exists = session.scalars(select(EnrolledPhoto).where(
                    EnrolledPhoto.case_id == case_id, EnrolledPhoto.sha256 == sha,
                    EnrolledPhoto.model_version == version)).first()
                if exists is None:
                    session.add(EnrolledPhoto(case_id=case_id, sha256=sha, object_key=photo_key, crop_key=crop_key,
                                              face_id=face_id, model_version=version, enrolled_by=actor.name))
            result.photos.append(sha)
        if retro:
            result.retro_matches = self.retro_search(case_id, np.stack([face.vector for *_, face in faces]))
        return result

    def case_vectors(self, case_id: str, model: str | None = None) -> np.ndarray:
        """The case's enrolled vectors of ``model``; reference photos are embedded again for a new model."""
        with self.sessions() as session:
            photos = list(self.get_case(session, case_id).photos)
        enrolled = self.enrolled_for(model)
        vectors = enrolled.vectors(case_id)
        if len(vectors) == 0 and photos and model not in (None, self.settings.models.embedder.name):
            encoder = self.encoder_for(model)
            bucket = self.settings.minio.buckets.references.name
            for photo in {p.sha256: p for p in photos}.values():
                data = self.objects.get_object(bucket, photo.object_key).read()
                _sha, face = self.face_of_photo(photo.object_key, data, "image/jpeg", model)
                enrolled.add(case_id, photo.sha256, encoder.version, face.vector)
            vectors = enrolled.vectors(case_id)
        if len(vectors) == 0:
            raise PhotoRejected("nothing_enrolled", f"case {case_id} has no enrolled photo yet")
        return vectors

    def search(self, actor: Actor, searcher, *, photo: tuple[str, bytes, str] | None = None,
               case_id: str | None = None, top_k: int = 10, offset: int = 0, platform: str | None = None,
               posted_from: dt.datetime | None = None, posted_to: dt.datetime | None = None) -> list:
        """Search the indexed faces with a photo's face or a case's faces; audited, refusals too.

        ``searcher`` is a ``mimamori.search.FaceSearch``: queries are embedded with the model of
        the collection the search alias points to now (a promotion takes effect at once). A
        search by case needs the client's consent in force for search.
        """
        faces, model = searcher.follow_alias()
        try:
            if photo is not None:
                sha, face = self.face_of_photo(*photo, model)
                vectors, target = face.vector[None, :], f"photo:{sha}"
            else:
                with self.sessions() as session:
                    self.get_case(session, case_id)
                    self.require_consent(session, case_id, ("search",), "searching with the case's faces")
                vectors, target = self.case_vectors(case_id, model), f"case:{case_id}"
        except MimamoriError as error:
            audit.record(self.sessions, actor, "search", case_id=case_id,
                         target="photo" if photo is not None else f"case:{case_id}", outcome="rejected",
                         reason=error.reason)
            error.audited = True
            raise
        hits = searcher.search(vectors, top_k=top_k, offset=offset, platform=platform, posted_from=posted_from,
                               posted_to=posted_to, collection=faces)
        audit.record(self.sessions, actor, "search", case_id=case_id, target=target, result_count=len(hits),
                     platform=platform, offset=offset)
        return hits

    def threshold(self, case: Case) -> float:
        model = self.settings.models.embedder.name
        return case_threshold(case, model, embedder_spec(model).match_threshold)

    def retro_search(self, case_id: str, vectors: np.ndarray) -> int:
        """Matches among the faces indexed before the enrolment; returns how many are new.

        ``vectors`` come from the configured model, so the search reads that model's face
        collection (not the search alias, which may point to another model), and it takes every
        face at or above the case's threshold (a range search), however many re-uploads there are.
        """
        from mimamori.services.search import FaceSearch
        from mimamori.services.watchlist import record_matches

        with self.sessions() as session:
            case = self.get_case(session, case_id)
            threshold = self.threshold(case)
        searcher = FaceSearch(self.settings, model=self.settings.models.embedder.name)
        found: dict[int, tuple[float, str]] = {}
        for hits in searcher.faces_above(vectors, threshold):
            for hit in hits:
                if hit.similarity > found.get(hit.face_id, (-1.0, ""))[0]:
                    found[hit.face_id] = (hit.similarity, hit.media_sha256)
        candidates = [(case_id, face_id, sha, similarity) for face_id, (similarity, sha) in found.items()]
        return len(record_matches(self.sessions, candidates, self.encoder.version, "retro"))

    # -- export for takedown requests --------------------------------------------------------------
    def export(self, actor: Actor, searcher, case_id: str, status: str | None = "confirmed") -> dict:
        """The case's matches (confirmed ones by default) with every sighting's URL, for takedown requests.

        Needs the client's consent in force for takedown. Holds URLs, platforms, dates and
        similarities, never an image, a crop link or a vector. Audited as ``export``.
        """
        try:
            with self.sessions() as session:
                case = self.get_case(session, case_id)
                self.require_consent(session, case_id, ("takedown",), "exporting for takedown requests")
                matches = sorted((m for m in case.matches if status is None or m.status == status),
                                 key=lambda m: m.id)
                display_name = case.display_name
        except MimamoriError as error:
            audit.record(self.sessions, actor, "export", case_id=case_id, outcome="rejected", reason=error.reason)
            error.audited = True
            raise
        sightings = searcher.sightings_of({m.media_sha256 for m in matches})
        items = [{"match_id": m.id, "status": m.status, "similarity": round(m.similarity, 4), "source": m.source,
                  "media_sha256": m.media_sha256, "found_at": m.created_at.isoformat(),
                  "sightings": [dataclasses.asdict(s) for s in sightings.get(m.media_sha256, [])]}
                 for m in matches]
        audit.record(self.sessions, actor, "export", case_id=case_id, result_count=len(items), status=status,
                     urls=sum(len(item["sightings"]) for item in items))
        return {"case_id": case_id, "display_name": display_name, "status": status,
                "exported_at": utcnow().isoformat(), "matches": items}

    # -- withdrawal -------------------------------------------------------------------------------
    def withdraw(self, actor: Actor, case_id: str) -> WithdrawalReport:
        """Delete everything the case holds, in every store; keep an audit tombstone."""
        with self.sessions() as session:
            self.get_case(session, case_id)
        vectors = 0
        alias = connect(self.settings)
        for model in EMBEDDERS:  # the case may have been embedded again for a promoted model
            if not utility.has_collection(self.settings.enrolled_collection(model), using=alias):
                continue
            enrolled = self.enrolled_for(model)
            vectors += enrolled.count(case_id)
            enrolled.delete_case(case_id)
        bucket = self.settings.minio.buckets.references.name
        objects = 0
        for obj in self.objects.list_objects(bucket, prefix=f"cases/{case_id}/", recursive=True):
            self.objects.remove_object(bucket, obj.object_name)
            objects += 1
        with self.sessions.begin() as session:
            case = self.get_case(session, case_id)
            photos, matches = len(case.photos), len(case.matches)
            session.delete(case)  # consents, photos and matches go with it (cascade)
        report = WithdrawalReport(case_id, vectors, objects, photos, matches)
        audit.record(self.sessions, actor, "withdraw", case_id=case_id, vectors=vectors, objects=objects,
                     photos=photos, matches=matches)
        return report
