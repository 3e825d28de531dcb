"""An action and its audit row are committed together or not at all (issue 22, acceptance 3).

A forked child process does the action and dies (``os._exit``) the moment the action's audit row has
been sent to the case database, before the commit (tests/support/audit_crash.py). What it did to
the database is then gone with its row: a crash cannot leave a case, a consent, a decision, a key
or an assignment without its row. An action outside the database (a search in Milvus, an export,
a withdrawal's deletions in Milvus and MinIO) committed a ``started`` row before it began, so the
attempt is on record even though its ``ok`` row died with the process. Then the same action, done
again without the hook, commits both, the ``ok`` row naming the attempt it completes.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mimamori.stores.cases import AuditEvent
from tests.support import audit_crash

pytestmark = pytest.mark.contract


def audit_rows(work, action: str) -> list[AuditEvent]:
    with work.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.mark.parametrize("action", sorted(audit_crash.ACTIONS))
def test_a_crash_before_the_commit_leaves_the_action_and_its_row_together_or_neither(action, tmp_path):
    work = audit_crash.workspace(tmp_path / "cases.sqlite3")
    audit_crash.prepare(work)
    before = [(row.id, row.outcome) for row in audit_rows(work, action)]
    changed = audit_crash.ACTIONS[action][1]
    if changed is not None:
        with work.sessions() as session:
            assert not changed(session), "the effect is there before the action"

    assert audit_crash.crash_during(work, action) == audit_crash.KILLED, "the child did not die at the hook"

    new = [row for row in audit_rows(work, action) if (row.id, row.outcome) not in before]
    started = action in audit_crash.ATTEMPTED  # the action reaches beyond the database
    assert [row.outcome for row in new] == (["started"] if started else []), "an ok row outlived the crash"
    if changed is not None:
        with work.sessions() as session:
            assert not changed(session), "the action was committed without its audit row"

    audit_crash.ACTIONS[action][0](work)  # the same action, no crash: both
    done = audit_rows(work, action)[len(before) + len(new):]
    assert [row.outcome for row in done] == (["started", "ok"] if started else ["ok"])
    if started:
        assert done[0].details["attempt"] == done[1].details["attempt"]
    if changed is not None:
        with work.sessions() as session:
            assert changed(session)
