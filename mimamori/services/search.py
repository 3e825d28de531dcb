"""Search by photo or by case: the audited action staff take (reading is in stores.face_search).

Queries are embedded with the model of the collection the search alias points to now, so a
promotion takes effect at once. A search by case needs the case assigned to the searcher
(services.access) and the client's consent in force for search; a reviewer's search by photo
shows only faces that are matches of their cases. Every search is audited, refusals too, with
what was searched for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from mimamori.core.errors import InvalidInput
from mimamori.services.access import require_case_access, visible_case_ids
from mimamori.services.audit import Actor, begin_attempt, record, refusals_audited
from mimamori.services.consent import require_consent
from mimamori.services.enrolment import Photo, case_vectors, face_of_photo
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Match, get_case
from mimamori.stores.face_search import MAX_RESULTS, FaceHit

# A reviewer's photo search ranks their cases' matched faces among this many times the nearest
# faces a page needs: a matched face further than that from the photo is not shown.
LIMITED_WINDOW = 10


@dataclass(frozen=True)
class SearchFilters:
    top_k: int = 10
    offset: int = 0
    platform: str | None = None
    posted_from: dt.datetime | None = None
    posted_to: dt.datetime | None = None

    def check(self) -> None:
        for value in (self.posted_from, self.posted_to):
            if value is not None and value.tzinfo is None:
                raise InvalidInput("naive_time", "give posted_from/posted_to with a time zone")


def check_query(photo_given: bool, case_id: str | None, filters: SearchFilters) -> None:
    """The checks a front door makes before it reads an upload: one photo or one case, aware times."""
    if photo_given == (case_id is not None):
        raise InvalidInput("photo_or_case", "search with either a photo or a case")
    filters.check()


def search_faces(work: Workspace, actor: Actor, *, photo: Photo | None = None, case_id: str | None = None,
                 filters: SearchFilters = SearchFilters()) -> list[FaceHit]:
    """The indexed faces nearest a photo's face or a case's enrolled faces.

    A case search needs the case assigned (admins: any). A reviewer's photo search answers only
    with faces that are matches of the reviewer's cases; an admin's, with any indexed face.
    """
    target = "photo" if photo is not None else f"case:{case_id}" if case_id is not None else None
    allowed: set[int] | None = None
    with refusals_audited(work.sessions, actor, "search", case_id=case_id, target=target):
        check_query(photo is not None, case_id, filters)
        if case_id is not None:
            with work.sessions() as session:
                require_case_access(session, actor, case_id)
        faces, model = work.searcher.follow_alias()
        if photo is not None:
            allowed = matched_faces(work, actor)
            sha, face = face_of_photo(work, photo, model)
            vectors, target = face.vector[None, :], f"photo:{sha}"
        else:
            with work.sessions() as session:
                get_case(session, case_id)
                require_consent(session, case_id, ("search",), "searching with the case's faces")
            vectors = case_vectors(work, case_id, model)
    # Committed before Milvus is asked: no crash leaves a search without its row.
    attempt = begin_attempt(work.sessions, actor, "search", case_id=case_id, target=target)
    hits = _ranked(work, vectors, faces, filters, allowed)
    record(work.sessions, actor, "search", case_id=case_id, target=target, result_count=len(hits),
           platform=filters.platform, offset=filters.offset, attempt=attempt)
    return hits


def matched_faces(work: Workspace, actor: Actor) -> set[int] | None:
    """The face ids that are matches of the cases ``actor`` sees; None: no limit (admins)."""
    with work.sessions() as session:
        visible = visible_case_ids(session, actor)
        if visible is None:
            return None
        if not visible:
            return set()
        return set(session.scalars(select(Match.face_id).where(Match.case_id.in_(visible))))


def _ranked(work: Workspace, vectors, faces, filters: SearchFilters, allowed: set[int] | None) -> list[FaceHit]:
    """One page of hits; with ``allowed``, of those faces only, ranked among a wider window of
    nearest faces (LIMITED_WINDOW times the page's end, up to Milvus's largest result window)."""
    if allowed is None:
        return work.searcher.search(vectors, top_k=filters.top_k, offset=filters.offset, platform=filters.platform,
                                    posted_from=filters.posted_from, posted_to=filters.posted_to,
                                    collection=faces)
    if not allowed:
        return []
    window = min(MAX_RESULTS, max(LIMITED_WINDOW * (filters.offset + filters.top_k), len(allowed)))
    hits = work.searcher.search(vectors, top_k=window, offset=0, platform=filters.platform,
                                posted_from=filters.posted_from, posted_to=filters.posted_to, collection=faces)
    return [hit for hit in hits if hit.face_id in allowed][filters.offset: filters.offset + filters.top_k]
