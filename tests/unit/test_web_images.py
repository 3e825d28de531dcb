"""Face images in the workbench: the browser gets the blurred variant until one is revealed;
a reveal (a form post with the CSRF token) gets the original bytes and is audited."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.stores.cases import AuditEvent, Case, Match
from tests.support.web import add_case_with_match, cheap_passwords, crop_jpeg, csrf_of, make_user, signed_in_client
from tests.support.workspace import IndexedFace, MemoryWorkspace, unit

ORIGINAL, REFERENCE = crop_jpeg(160, seed=1), crop_jpeg(160, seed=2)


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {},
                           [IndexedFace(7, "a" * 64, unit(1, 0)), IndexedFace(8, "b" * 64, unit(0, 1))])
    make_user(work, "anna", "reviewer")
    make_user(work, "ada", "admin")
    add_case_with_match(work, "c1", 7, "a" * 64, crop=ORIGINAL, reference=REFERENCE, assigned=("anna",))
    return work


def detail(data: bytes) -> float:
    image = Image.open(io.BytesIO(data)).convert("L").resize((256, 256))
    return float(np.abs(np.asarray(image.filter(ImageFilter.FIND_EDGES), dtype=np.float64)[2:-2, 2:-2]).mean())


def reveals(work) -> list[AuditEvent]:
    with work.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "reveal")))


def test_the_found_face_is_served_blurred_until_it_is_revealed(work):
    client = signed_in_client(work, "anna")
    page = client.get("/queue")
    assert 'id="found-1"' in page.text and 'id="reveal-found-1"' in page.text
    served = client.get("/images/matches/1/found")
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "no-store"
    assert served.content != ORIGINAL
    assert Image.open(io.BytesIO(served.content)).mode == "L"  # greyscale by default
    assert detail(served.content) < detail(ORIGINAL) / 10
    assert not reveals(work)
    assert client.post("/images/matches/1/found/reveal").status_code == 403  # no CSRF token: no pixels
    assert not reveals(work)
    revealed = client.post("/images/matches/1/found/reveal", data={"csrf_token": csrf_of(page.text)})
    assert revealed.status_code == 200 and revealed.content == ORIGINAL
    assert revealed.headers["cache-control"] == "no-store"
    [row] = reveals(work)
    assert (row.actor, row.case_id, row.target, row.details["image"]) == ("anna", "c1", "match:1", "found_face")


def test_a_reveal_as_the_pages_script_sends_it_is_answered(work):
    """workbench.js posts with fetch(): Accept */*, the session cookie, no Authorization header.
    The body limit's early check must take that for the browser it is, not an anonymous API call."""
    client = signed_in_client(work, "anna")
    csrf = csrf_of(client.get("/queue").text)
    revealed = client.post("/images/matches/1/found/reveal", data={"csrf_token": csrf}, headers={"Accept": "*/*"})
    assert revealed.status_code == 200 and revealed.content == ORIGINAL
    client.cookies.clear()
    anonymous = client.post("/images/matches/1/found/reveal", data={"csrf_token": csrf}, headers={"Accept": "*/*"})
    assert anonymous.status_code == 401 and anonymous.content != ORIGINAL


def test_the_enrolled_face_is_blurred_too_and_its_reveal_audited(work):
    client = signed_in_client(work, "anna")
    csrf = csrf_of(client.get("/account").text)
    served = client.get("/images/photos/1/enrolled")
    assert served.content != REFERENCE and detail(served.content) < detail(REFERENCE) / 10
    assert client.post("/images/photos/1/enrolled/reveal", data={"csrf_token": csrf}).content == REFERENCE
    assert [r.target for r in reveals(work)] == ["photo:1"]


def test_the_users_blur_setting_is_used(work):
    from mimamori.services import users

    client = signed_in_client(work, "anna")
    strong = client.get("/images/matches/1/found").content
    users.set_preferences(work, users.signed_in(work, client.cookies.get("mimamori_session")), blur_radius=4,
                          greyscale=False)
    weak = client.get("/images/matches/1/found").content
    assert Image.open(io.BytesIO(weak)).mode == "RGB" and detail(weak) > detail(strong)


def test_a_search_hits_face_is_blurred_and_only_an_admin_sees_a_face_that_is_no_match(work):
    work.objects.put(work.settings.minio.buckets.crops.name, "crops/8.jpg", crop_jpeg(seed=9))
    admin, anna = signed_in_client(work, "ada"), signed_in_client(work, "anna")
    blurred = admin.get("/images/faces/8/found")
    assert blurred.status_code == 200 and detail(blurred.content) < detail(crop_jpeg(seed=9)) / 10
    assert anna.get("/images/faces/8/found").status_code == 403  # not a match of her cases
    assert anna.get("/images/faces/7/found").status_code == 200  # a match of c1
    csrf = csrf_of(admin.get("/account").text)
    assert admin.post("/images/faces/8/found/reveal", data={"csrf_token": csrf}).content == crop_jpeg(seed=9)
    assert [r.target for r in reveals(work)] == ["face:8"]


def test_nothing_of_a_client_reaches_the_logs(work, caplog):
    """A reviewer's working session (queue, evidence, reveal, a decision with a note, the case's
    page) at DEBUG on every logger: no client's name, note, image bytes or page URL in the log."""
    caplog.set_level("DEBUG")
    with work.sessions.begin() as session:
        session.get(Case, "c1").display_name = "Hanako Yamada"
    client = signed_in_client(work, "anna")
    page = client.get("/queue")
    csrf = csrf_of(page.text)
    assert "Hanako Yamada" in page.text  # the page shows it to the assigned reviewer ...
    assert "https://example.org/7" in client.get("/matches/1").text  # the evidence: the found face's URL
    client.get("/images/matches/1/found")
    assert client.post("/images/matches/1/found/reveal", data={"csrf_token": csrf}).content == ORIGINAL
    decided = client.post("/matches/1/decision", data={"csrf_token": csrf, "decision": "confirmed",
                                                       "note": "seen on her former partner's page"})
    assert decided.status_code == 303
    with work.sessions() as session:
        assert session.get(Match, 1).status == "confirmed"
    client.get("/cases/c1")
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in ("Hanako Yamada", "former partner", "https://example.org/7", ORIGINAL.hex()[:64],
                   REFERENCE.hex()[:64]):
        assert secret not in logged  # ... and the log never does
