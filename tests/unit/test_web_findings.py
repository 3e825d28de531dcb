"""The workbench's answers to a security and robustness review (pages and what they call): notices
taken from the URL only when they parse, the second-opinion lane, request bodies bounded,
sessions rotated at sign-in, claims released, access ended with a user, every refusal said."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.stores.cases import AuditEvent
from tests.support.web import add_case_with_match, cheap_passwords, crop_jpeg, make_user, signed_in_client
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {},
                           [IndexedFace(7, "a" * 64, unit(1, 0)), IndexedFace(8, "b" * 64, unit(0, 1))])
    for name, role in (("anna", "reviewer"), ("bob", "reviewer"), ("ada", "admin")):
        make_user(work, name, role)
    add_case_with_match(work, "c1", 7, "a" * 64, crop=crop_jpeg(), reference=crop_jpeg(seed=2),
                        assigned=("anna", "bob"))
    return work


def audit_rows(work, **where) -> list[AuditEvent]:
    with work.sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def test_the_enrolment_notice_is_parsed_in_the_route(work):
    client = signed_in_client(work, "ada")
    page = client.get("/cases/c1?done=enrolled-2-3")
    assert page.status_code == 200 and 'id="notice"' in page.text
    assert "2 photo(s) enrolled; 3 earlier match(es) found." in page.text
    for done in ("enrolled-1", "enrolled-x-y", "enrolled-1-2-3", "enrolled--", "whatever"):
        page = client.get(f"/cases/c1?done={done}")
        assert page.status_code == 200 and 'id="notice"' not in page.text, done


def test_the_withdrawal_notice_names_only_a_case_that_is_gone(work):
    client = signed_in_client(work, "ada")
    assert 'id="notice"' in client.get("/cases?withdrawn=c9").text
    assert 'id="notice"' not in client.get("/cases?withdrawn=c1").text  # still there
    text = client.get("/cases", params={"withdrawn": "c1. Call us at 555"}).text
    assert 'id="notice"' not in text and "Call us" not in text
