"""The review queue of the workbench: what waits for me, exclusive claims, decisions, the evidence.

The queue holds the matches of the actor's cases (services/access.py) grouped by case, then by
media cluster: the same media (sha256), or near-duplicates by the media's perceptual hash
within the pipeline's near-duplicate distance, so a reviewer can decide a re-uploaded series at
once. Two lanes: ``pending`` (new matches) and ``unsure`` (a second opinion: shown to anyone but
the reviewers who marked the match unsure, and to admins).

Opening items claims them (one conditional UPDATE, so two reviewers racing never both hold
one); others do not see claimed items until the claim expires (organisation setting
``claim_minutes``). A decision needs the claim or a free item.

A queue page reads the database by index, a page of items at a time, and asks the face store
twice whatever its size (the found faces and every sighting of their media, batched).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session

from mimamori.core.errors import Forbidden, InvalidInput, NotFound
from mimamori.core.spreadsheet import rows_csv
from mimamori.services import cases as case_service
from mimamori.services import match_signals
from mimamori.services.access import require_case_access, visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.matches import (
    DECIDING_ROLES,
    SEES_ALL_UNSURE,
    MatchView,
    claim_is_free_or_mine,
    marked_unsure_by,
    record_decisions,
)
from mimamori.services.users import organisation_settings
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import DECISIONS, Case, EnrolledPhoto, Match, MatchDecision, get_case, utcnow
from mimamori.stores.face_search import Sighting, StoredFace

LANES = {"pending": "pending_review", "unsure": "unsure"}
ORDERS = ("newest", "strongest")


@dataclass(frozen=True)
class QueueItem:
    match_id: int
    case_id: str
    face_id: int
    media_sha256: str
    similarity: float
    threshold: float
    status: str
    created_at: dt.datetime
    scraped_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    claimed_by: str | None
    claimed_until: dt.datetime | None
    note: str | None
    media_phash: str | None = None
    matched_by: str = ""  # issue 20: which signals fired, e.g. "face 0.71 / PDQ distance 12"
    face: StoredFace | None = None  # platform, source URL, posted time, box, crop key (None: not in the index)
    page_url: str | None = None  # of the upload the face was found in
    sightings: list[Sighting] = field(default_factory=list)  # every place the media was seen, oldest first


@dataclass(frozen=True)
class Cluster:
    key: str  # the media sha256 of its first item
    media_sha256s: list[str]
    items: list[QueueItem]


@dataclass(frozen=True)
class CaseQueue:
    case_id: str
    display_name: str
    threshold: float
    pending_total: int  # the case's items in this lane that the actor may take (not only this page's)
    clusters: list[Cluster]  # empty for the cases after this page's items
    enrolled_photo_ids: list[int] = field(default_factory=list)  # the reference faces (enrolled_face_image)


@dataclass(frozen=True)
class DecisionRow:
    id: int
    at: dt.datetime
    case_id: str
    match_id: int
    decision: str
    note: str | None
    actor: str
    role: str
    bulk: bool
    similarity: float
    media_sha256: str


@dataclass(frozen=True)
class Evidence:
    match: MatchView
    display_name: str
    threshold: float
    face: StoredFace | None
    page_url: str | None
    enrolled_photo_ids: list[int]
    sightings: list[Sighting]
    decisions: list[DecisionRow]  # this match's earlier decisions, oldest first (an unsure one's note)
    claimed_by: str | None
    claimed_until: dt.datetime | None
    second_opinion_needed: bool = False  # the actor marked it unsure: another reviewer decides it


def _lane_condition(actor: Actor, status: str):
    """The lane's status; in the unsure lane, not the matches this actor marked unsure (admins: all)."""
    if status != "unsure" or actor.role in SEES_ALL_UNSURE:
        return Match.status == status
    marked = exists().where(MatchDecision.match_id == Match.id, MatchDecision.actor == actor.name,
                            MatchDecision.decision == "unsure")
    return and_(Match.status == status, not_(marked))


def _check_choice(lane: str, order: str, limit: int) -> None:
    if lane not in LANES:
        raise InvalidInput("unknown_lane", f"the queue's lanes are {', '.join(LANES)}, not {lane!r}")
    if order not in ORDERS:
        raise InvalidInput("unknown_order", f"the queue is ordered {' or '.join(ORDERS)}, not {order!r}")
    if not 1 <= limit <= 500:
        raise InvalidInput("bad_limit", f"a queue page holds 1 to 500 items, not {limit}")


def review_queue(work: Workspace, actor: Actor, *, case_id: str | None = None, order: str = "newest",
                 lane: str = "pending", limit: int = 50) -> list[CaseQueue]:
    """The actor's queue: every case with items in the lane, in order, and a page of ``limit`` items
    grouped into clusters, filled from the first case on."""
    with refusals_audited(work.sessions, actor, "view_queue", case_id=case_id, lane=lane), \
            work.sessions() as session:
        _check_choice(lane, order, limit)
        now = utcnow()
        where = [_lane_condition(actor, LANES[lane]), claim_is_free_or_mine(actor, now)]
        if case_id is not None:
            require_case_access(session, actor, case_id)
            get_case(session, case_id)
            where.append(Match.case_id == case_id)
        else:
            visible = visible_case_ids(session, actor)
            if visible is not None:
                where.append(Match.case_id.in_(sorted(visible)))
        counts = session.execute(select(Match.case_id, func.count(), func.max(Match.created_at),
                                        func.max(Match.similarity)).where(*where).group_by(Match.case_id)).all()
        found = {case.id: case for case in session.scalars(select(Case).where(Case.id.in_([c[0] for c in counts])))}
        thresholds = {cid: case_service.threshold(work, case) for cid, case in found.items()}
        if order == "newest":
            ranked = sorted(counts, key=lambda c: (c[2], c[0]), reverse=True)
        else:  # strongest: the case whose best item is furthest over its threshold
            ranked = sorted(counts, key=lambda c: (c[3] - thresholds[c[0]], c[0]), reverse=True)
        item_order = ((Match.created_at.desc(), Match.id.desc()) if order == "newest"
                      else (Match.similarity.desc(), Match.id.desc()))
        page: dict[str, list[Match]] = {}
        room = limit
        for cid, _count, _newest, _best in ranked:
            if room <= 0:
                break
            rows = list(session.scalars(select(Match).where(*where, Match.case_id == cid)
                                        .order_by(*item_order).limit(room)))
            page[cid], room = rows, room - len(rows)
        photos: dict[str, list[int]] = {}
        if page:
            for photo_id, photo_case in session.execute(select(EnrolledPhoto.id, EnrolledPhoto.case_id)
                                                        .where(EnrolledPhoto.case_id.in_(sorted(page)))
                                                        .order_by(EnrolledPhoto.id)):
                photos.setdefault(photo_case, []).append(photo_id)
    shown = [m for rows in page.values() for m in rows]
    faces, sightings = _face_store_facts(work, shown)
    distance = work.settings.pipeline.near_duplicate_distance
    queue = []
    for cid, count, _newest, _best in ranked:
        items = [_item(m, thresholds[cid], faces, sightings) for m in page.get(cid, [])]
        queue.append(CaseQueue(cid, found[cid].display_name, thresholds[cid], count,
                               clusters_of(items, distance), photos.get(cid, [])))
    record(work.sessions, actor, "view_queue", case_id=case_id, result_count=len(shown), lane=lane, order=order)
    return queue


def _face_store_facts(work: Workspace, matches: list[Match]
                      ) -> tuple[dict[int, StoredFace], dict[str, list[Sighting]]]:
    """The found faces and every sighting of their media: batched reads, whatever the page's size (the faces
    once per model the page's matches were made with, through that model's collection; the sightings once)."""
    if not matches:
        return {}, {}
    by_model: dict[str | None, set[int]] = {}
    for match in matches:  # each match's face is in the collection of the model that found it
        by_model.setdefault(match.model_version, set()).add(match.face_id)
    faces: dict[int, StoredFace] = {}
    for version, face_ids in by_model.items():
        faces.update(work.searcher_of_version(version).faces_by_id(face_ids))
    return faces, work.searcher.sightings_of({m.media_sha256 for m in matches})  # sightings: one shared collection


def _page_url(face: StoredFace | None, sightings: list[Sighting]) -> str | None:
    """The page of the upload the face was found in (its sighting has the face's source URL)."""
    if face is not None:
        for sighting in sightings:
            if sighting.source_url == face.source_url and sighting.page_url:
                return sighting.page_url
    return next((s.page_url for s in sightings if s.page_url), None)


def _item(match: Match, threshold: float, faces: dict[int, StoredFace],
          sightings: dict[str, list[Sighting]]) -> QueueItem:
    face, seen = faces.get(match.face_id), sightings.get(match.media_sha256, [])
    return QueueItem(match.id, match.case_id, match.face_id, match.media_sha256, match.similarity, threshold,
                     match.status, match.created_at, match.scraped_at, match.last_seen_at, match.claimed_by,
                     match.claimed_until, match.note, match.media_phash,
                     match_signals.summary(match.signals, match.similarity), face, _page_url(face, seen), list(seen))


def _near(a: str | None, b: str | None, distance: int) -> bool:
    if not a or not b:
        return False
    try:
        return (int(a, 16) ^ int(b, 16)).bit_count() <= distance
    except ValueError:  # not a hash the pipeline wrote: no cluster by it
        return False


def clusters_of(items: list[QueueItem], distance: int) -> list[Cluster]:
    """Items of the same media, or of media whose pHashes are within ``distance`` bits (transitively),
    in the order of each cluster's first item."""
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(items)):
        for j in range(i):
            if items[i].media_sha256 == items[j].media_sha256 or \
                    _near(items[i].media_phash, items[j].media_phash, distance):
                parent[root(i)] = root(j)
    groups: dict[int, list[QueueItem]] = {}
    for i, item in enumerate(items):
        groups.setdefault(root(i), []).append(item)
    return [Cluster(members[0].media_sha256, list(dict.fromkeys(m.media_sha256 for m in members)), members)
            for members in groups.values()]


def claim_minutes(work: Workspace) -> int:
    return int(organisation_settings(work).claim_minutes)


@dataclass(frozen=True)
class Held:
    """What a claim got: the ids the actor now holds, and until when (one time for all of them)."""

    match_ids: list[int]
    until: dt.datetime | None


def claim(work: Workspace, actor: Actor, match_ids: Iterable[int]) -> list[int]:
    """Claim matches for ``actor`` (renewing their own claims); return the ids the actor now holds."""
    return hold(work, actor, match_ids).match_ids


def hold(work: Workspace, actor: Actor, match_ids: Iterable[int]) -> Held:
    """``claim``, with the time the claims run until (a page that lists its items before claiming
    them shows that without reading them again).

    One conditional UPDATE: an item another reviewer holds (unexpired), of a case the actor is
    not assigned to, already decided, or an unsure one the actor marked, is left out.
    """
    ids = sorted({int(i) for i in match_ids})
    with refusals_audited(work.sessions, actor, "claim", requested=len(ids)):
        if actor.role not in DECIDING_ROLES:
            raise Forbidden("role_cannot_review", f"a {actor.role} cannot claim matches")
        if not ids:
            return Held([], None)
        minutes = claim_minutes(work)
        with work.sessions.begin() as session:
            now = utcnow()
            until = now + dt.timedelta(minutes=minutes)
            statement = update(Match).where(
                Match.id.in_(ids), claim_is_free_or_mine(actor, now),
                or_(_lane_condition(actor, "pending_review"), _lane_condition(actor, "unsure")))
            visible = visible_case_ids(session, actor)
            if visible is not None:
                statement = statement.where(Match.case_id.in_(sorted(visible)))
            held = session.execute(statement.values(claimed_by=actor.name, claimed_until=until)
                                   .returning(Match.id, Match.case_id)
                                   .execution_options(synchronize_session=False)).all()
            case_ids = {case for _id, case in held}
            record(work.sessions, actor, "claim", case_id=case_ids.pop() if len(case_ids) == 1 else None,
                   result_count=len(held), requested=len(ids), session=session)
    return Held(sorted(match_id for match_id, _case in held), until if held else None)


def release(work: Workspace, actor: Actor, match_ids: Iterable[int]) -> int:
    """Give back the actor's own claims (others' are left alone); return how many were released."""
    ids = sorted({int(i) for i in match_ids})
    if not ids:
        return 0
    with work.sessions.begin() as session:
        released = session.execute(update(Match).where(Match.id.in_(ids), Match.claimed_by == actor.name)
                                   .values(claimed_by=None, claimed_until=None)
                                   .execution_options(synchronize_session=False)).rowcount
        record(work.sessions, actor, "release", result_count=released, requested=len(ids), session=session)
    return released


def decide(work: Workspace, actor: Actor, match_id: int, decision: str, note: str | None = None) -> MatchView:
    """Confirm, reject or mark unsure one match still to decide (or the actor's own decision again);
    its claim is released. See matches.record_decisions."""
    return record_decisions(work, actor, [match_id], decision, note, allowed=DECISIONS, open_only=True)[0]


def decide_cluster(work: Workspace, actor: Actor, match_ids: list[int], decision: str,
                   note: str | None = None) -> list[MatchView]:
    """One decision for a whole cluster, in one transaction (all or none); each row marked bulk."""
    return record_decisions(work, actor, list(match_ids), decision, note, allowed=DECISIONS, bulk=True,
                            open_only=True)


def _decision_rows(session: Session, where: list) -> list[DecisionRow]:
    query = (select(MatchDecision, Match.similarity, Match.media_sha256).join(Match, Match.id == MatchDecision.match_id)
             .where(*where).order_by(MatchDecision.id))
    return [DecisionRow(d.id, d.at, d.case_id, d.match_id, d.decision, d.note, d.actor, d.role, d.bulk,
                        round(similarity, 4), sha) for d, similarity, sha in session.execute(query)]


def evidence(work: Workspace, actor: Actor, match_id: int) -> Evidence:
    """What deciding one match needs on one screen; audited ``view_match``."""
    target = f"match:{match_id}"
    with refusals_audited(work.sessions, actor, "view_match", target=target), work.sessions() as session:
        match = session.get(Match, match_id)
        if match is None:
            raise NotFound("unknown_match", f"no match {match_id}")
        require_case_access(session, actor, match.case_id)
        case = get_case(session, match.case_id)
        view, threshold, display_name = MatchView.of(match), case_service.threshold(work, case), case.display_name
        claimed_by, claimed_until = match.claimed_by, match.claimed_until
        photo_ids = list(session.scalars(select(EnrolledPhoto.id).where(EnrolledPhoto.case_id == match.case_id)
                                         .order_by(EnrolledPhoto.id)))
        decisions = _decision_rows(session, [MatchDecision.match_id == match_id])
        second_opinion = view.status == "unsure" and actor.role not in SEES_ALL_UNSURE \
            and bool(marked_unsure_by(session, actor, [match_id]))
    faces, sightings = _face_store_facts(work, [match])
    face, seen = faces.get(view.face_id), sightings.get(view.media_sha256, [])
    record(work.sessions, actor, "view_match", case_id=view.case_id, target=target, result_count=len(seen))
    return Evidence(view, display_name, threshold, face, _page_url(face, seen), photo_ids, list(seen), decisions,
                    claimed_by, claimed_until, second_opinion)


def decision_log(work: Workspace, actor: Actor, case_id: str | None = None,
                 since: dt.datetime | None = None) -> list[DecisionRow]:
    """Every decision (oldest first), of one case or all: auditors and admins see every case, a
    reviewer only their own. Audited ``export_decisions``."""
    with refusals_audited(work.sessions, actor, "export_decisions", case_id=case_id), work.sessions() as session:
        if since is not None and since.tzinfo is None:
            raise InvalidInput("naive_time", "give since with a time zone")
        where = []
        if since is not None:
            where.append(MatchDecision.at >= since)
        if case_id is not None:
            if actor.role == "reviewer":
                require_case_access(session, actor, case_id)
            else:
                get_case(session, case_id)
            where.append(MatchDecision.case_id == case_id)
        elif actor.role == "reviewer":
            visible = visible_case_ids(session, actor)
            if visible is not None:
                where.append(MatchDecision.case_id.in_(sorted(visible)))
        rows = _decision_rows(session, where)
    record(work.sessions, actor, "export_decisions", case_id=case_id, result_count=len(rows),
           since=since.isoformat() if since else None)
    return rows


CSV_COLUMNS = ("id", "at", "case_id", "match_id", "decision", "note", "actor", "role", "bulk", "similarity",
               "media_sha256")


def decision_log_csv(rows: list[DecisionRow]) -> str:
    return rows_csv(CSV_COLUMNS, rows)
