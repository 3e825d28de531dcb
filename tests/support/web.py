"""The workbench over in-memory stores: staff users made through the real services, signed in
with real TOTP codes, and a TestClient on https (the session cookie is Secure)."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pyotp
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from PIL import Image

from mimamori.api.app import create_app
from mimamori.services import users
from mimamori.services.audit import Actor
from mimamori.stores.cases import Case, CaseAssignment, EnrolledPhoto, Match
from mimamori.web.security import COOKIE
from tests.support.workspace import MemoryWorkspace

OPERATOR = Actor("root", "operator")
PASSWORD = "correct horse battery staple"
BASE_URL = "https://testserver"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"  # what a browser asks for a page
_secrets: dict[str, str] = {}


def crop_jpeg(side: int = 160, seed: int = 1) -> bytes:
    """A detailed picture (random blocks, sharp edges), as a face crop JPEG."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(blocks, "RGB").resize((side, side), Image.Resampling.NEAREST).save(out, "JPEG", quality=95)
    return out.getvalue()


def code_for(username: str, ahead: int = 0) -> str:
    """A TOTP code of the user's secret, ``ahead`` time steps from now (each code is accepted once)."""
    return pyotp.TOTP(_secrets[username]).at(time.time() + 30 * ahead)


def cheap_passwords(monkeypatch) -> None:
    """Argon2id with the smallest parameters: the same code, a hundredth of the time per hash."""
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def make_user(work: MemoryWorkspace, username: str, role: str) -> None:
    """A staff user who has followed their invitation (password PASSWORD, TOTP set up)."""
    invitation = users.create_user(work, OPERATOR, username, role)
    enrolment = users.begin_enrolment(work, invitation.token)
    _secrets[username] = enrolment.secret
    users.complete_enrolment(work, invitation.token, PASSWORD, code_for(username, -1))


def signed_in_client(work: MemoryWorkspace, username: str | None = None, **options) -> TestClient:
    """A client of the whole app; with ``username``, signed in (password and code, through the services)."""
    client = TestClient(create_app(work.settings, work), base_url=BASE_URL, raise_server_exceptions=False,
                        follow_redirects=False, headers={"Accept": BROWSER_ACCEPT}, **options)
    if username is not None:
        token = users.sign_in(work, username, PASSWORD, "testclient")
        token = users.second_factor(work, token, code_for(username, 1), "testclient")
        client.cookies.set(COOKIE, token)
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def add_case_with_match(work: MemoryWorkspace, case_id: str, face_id: int, sha: str, *, crop: bytes,
                        reference: bytes, assigned: tuple[str, ...] = (), similarity: float = 0.9,
                        phash: str | None = None) -> int:
    """A case with an enrolled photo and one pending match of an indexed face; returns the match id."""
    work.objects.put(work.settings.minio.buckets.crops.name, f"crops/{face_id}.jpg", crop)
    work.objects.put(work.settings.minio.buckets.references.name, f"cases/{case_id}/crops/ref.jpg", reference)
    with work.sessions.begin() as session:
        if session.get(Case, case_id) is None:
            session.add(Case(id=case_id, display_name=f"Client {case_id}", created_by="root"))
            session.flush()
            session.add(EnrolledPhoto(case_id=case_id, sha256="f" * 64, object_key=f"cases/{case_id}/photos/ref",
                                      crop_key=f"cases/{case_id}/crops/ref.jpg", face_id=900 + face_id,
                                      model_version="memory/v1", enrolled_by="root"))
        for name in assigned:
            if session.get(CaseAssignment, (case_id, name)) is None:
                session.add(CaseAssignment(case_id=case_id, username=name, assigned_by="root"))
        match = Match(case_id=case_id, face_id=face_id, media_sha256=sha, model_version="memory/v1",
                      similarity=similarity, source="stream", media_phash=phash)
        session.add(match)
        session.flush()
        return match.id
