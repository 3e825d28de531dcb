"""Export for takedown requests: a case's matches with every sighting's URL.

Needs the case assigned to the reviewer (admins: any case) and the client's consent in force
for takedown. Holds URLs, platforms, dates and similarities, never an image, a crop link or a
vector. Audited as ``export``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mimamori.services.access import require_case_access
from mimamori.services.audit import Actor, begin_attempt, record, refusals_audited
from mimamori.services.consent import require_consent
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import get_case, utcnow


def export_case(work: Workspace, actor: Actor, case_id: str, status: str | None = "confirmed") -> dict[str, Any]:
    """The case's matches of ``status`` (None: all) with their sightings."""
    with refusals_audited(work.sessions, actor, "export", case_id=case_id), work.sessions() as session:
        require_case_access(session, actor, case_id)
        case = get_case(session, case_id)
        require_consent(session, case_id, ("takedown",), "exporting for takedown requests")
        matches = sorted((m for m in case.matches if status is None or m.status == status), key=lambda m: m.id)
        display_name = case.display_name
    attempt = begin_attempt(work.sessions, actor, "export", case_id=case_id, status=status)
    sightings = work.searcher.sightings_of({m.media_sha256 for m in matches})
    items = [{"match_id": m.id, "status": m.status, "similarity": round(m.similarity, 4), "source": m.source,
              "media_sha256": m.media_sha256, "found_at": m.created_at.isoformat(),
              "sightings": [dataclasses.asdict(s) for s in sightings.get(m.media_sha256, [])]}
             for m in matches]
    record(work.sessions, actor, "export", case_id=case_id, result_count=len(items), status=status,
           urls=sum(len(item["sightings"]) for item in items), attempt=attempt)
    return {"case_id": case_id, "display_name": display_name, "status": status,
            "exported_at": utcnow().isoformat(), "matches": items}
