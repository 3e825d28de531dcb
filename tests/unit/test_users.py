"""Staff accounts on SQLite: invitations, argon2id passwords, TOTP, two-step sign-in, throttling,
sessions and their timeouts, disabling, preferences and organisation settings, and the audit.

The clock is the service module's ``utcnow`` (TOTP codes follow it too); argon2 runs with
small parameters here, the same code path as production's.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from mimamori.services import users
from mimamori.services.audit import Actor
from mimamori.stores.cases import AuditEvent, User, WebSession
from tests.support.workspace import MemoryWorkspace

ADMIN = Actor("ada", "admin")
PASSWORD = "correct horse battery"
START = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(users, "utcnow", clock)
    return clock


@pytest.fixture
def work(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(users, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {})


def code(secret: str, clock: Clock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now + dt.timedelta(seconds=30 * steps))


def enrolled(work, clock, username: str = "rei", role: str = "reviewer") -> str:
    """A user who has followed their invitation; their TOTP secret."""
    invitation = users.create_user(work, ADMIN, username, role)
    secret = users.begin_enrolment(work, invitation.token).secret
    users.complete_enrolment(work, invitation.token, PASSWORD, code(secret, clock))
    clock.advance(seconds=30)  # the enrolment used this step's code
    return secret


def signed_in(work, clock, secret: str, username: str = "rei", client: str = "10.0.0.1") -> str:
    token = users.sign_in(work, username, PASSWORD, client)
    token = users.second_factor(work, token, code(secret, clock), client)  # the full session's own token
    clock.advance(seconds=30)
    return token


def audit_rows(work, **where) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with work.sessions() as session:
        return list(session.scalars(query))


def test_an_invitation_sets_a_password_and_totp_once(work, clock):
    invitation = users.create_user(work, ADMIN, "rei", "reviewer")
    assert (invitation.username, invitation.role) == ("rei", "reviewer")
    assert invitation.expires_at == START + dt.timedelta(hours=72) and len(invitation.token) >= 43
    with work.sessions() as session:
        user = session.scalars(select(User)).one()
        assert user.invite_sha256 == hashlib.sha256(invitation.token.encode()).hexdigest()
        assert user.password_hash is None and not user.totp_confirmed
    earlier = users.begin_enrolment(work, invitation.token)
    enrolment = users.begin_enrolment(work, invitation.token)
    assert enrolment.secret != earlier.secret  # each opening shows a new secret: the last one shown works
    assert users.begin_enrolment(work, invitation.token, rotate=False).secret == enrolment.secret
    with pytest.raises(InvalidInput):
        users.complete_enrolment(work, invitation.token, PASSWORD, code(earlier.secret, clock))
    assert enrolment.otpauth_uri.startswith("otpauth://totp/mimamori:rei?")
    assert "issuer=mimamori" in enrolment.otpauth_uri
    assert enrolment.qr_svg.startswith("<svg") and "<script" not in enrolment.qr_svg
    for password, reason in [("short pass", "password_too_short"), ("rei-" * 4, "password_has_username"),
                             ("my name is REI, ok?", "password_has_username")]:
        with pytest.raises(InvalidInput) as refused:
            users.complete_enrolment(work, invitation.token, password, code(enrolment.secret, clock))
        assert refused.value.reason == reason
    with pytest.raises(InvalidInput) as wrong:
        users.complete_enrolment(work, invitation.token, PASSWORD, "000000" if code(enrolment.secret, clock)
                                 != "000000" else "111111")
    assert wrong.value.reason == "wrong_code"
    users.complete_enrolment(work, invitation.token, PASSWORD, code(enrolment.secret, clock))
    with work.sessions() as session:
        user = session.scalars(select(User)).one()
        assert user.password_hash.startswith("$argon2id$") and user.totp_confirmed and user.invite_sha256 is None
    for again in (lambda: users.begin_enrolment(work, invitation.token),
                  lambda: users.complete_enrolment(work, invitation.token, PASSWORD, code(enrolment.secret, clock))):
        with pytest.raises(Unauthenticated) as used:
            again()
        assert used.value.reason == "invitation_invalid"


def test_an_invitation_expires(work, clock):
    invitation = users.create_user(work, ADMIN, "rei", "reviewer")
    clock.advance(hours=72)
    with pytest.raises(Unauthenticated, match="expired"):
        users.begin_enrolment(work, invitation.token)


def test_only_admins_create_valid_users(work):
    with pytest.raises(Forbidden):
        users.create_user(work, Actor("rei", "reviewer"), "eve", "admin")
    for name, role, kind, reason in [("Has Space", "reviewer", InvalidInput, "bad_username"),
                                     ("cli:root", "reviewer", InvalidInput, "bad_username"),
                                     ("eve", "root", InvalidInput, "unknown_role")]:
        with pytest.raises(kind) as refused:
            users.create_user(work, ADMIN, name, role)
        assert refused.value.reason == reason
    users.create_user(work, Actor("cli:root", "operator"), "eve", "admin")  # the first admin, from the shell
    with pytest.raises(Conflict):
        users.create_user(work, ADMIN, "eve", "reviewer")
    assert [(r.action, r.outcome) for r in audit_rows(work)] == [("create_user", "rejected")] * 4 + [
        ("create_user", "ok"), ("create_user", "rejected")]


def test_signing_in_takes_the_password_then_a_code_used_once(work, clock):
    secret = enrolled(work, clock)
    token = users.sign_in(work, "Rei ", PASSWORD, "10.0.0.1")  # the name as typed: trimmed, lower-cased
    assert users.signed_in(work, token) is None  # the second factor is pending
    pending = users.signed_in(work, token, pending_ok=True)
    assert pending.second_factor is False and pending.username == "rei"
    with pytest.raises(Unauthenticated) as wrong:
        users.second_factor(work, token, "12345", "10.0.0.1")
    assert wrong.value.reason == "wrong_code"
    now_code = code(secret, clock)
    pending_csrf = pending.csrf_token
    full = users.second_factor(work, token, now_code, "10.0.0.1")
    assert full != token and users.signed_in(work, token, pending_ok=True) is None  # a new token, the old gone
    signed = users.signed_in(work, full)
    assert (signed.username, signed.role, signed.actor, signed.second_factor) == \
        ("rei", "reviewer", Actor("rei", "reviewer"), True)
    assert len(signed.csrf_token) >= 43 and signed.csrf_token != pending_csrf and signed.review_started_at is None
    with pytest.raises(Unauthenticated) as again:
        users.second_factor(work, full, now_code, "10.0.0.1")  # a full session takes no code
    assert again.value.reason == "session_expired"
    other = users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    with pytest.raises(Unauthenticated, match="used already"):
        users.second_factor(work, other, now_code, "10.0.0.1")  # the same code twice
    clock.advance(seconds=30)
    users.second_factor(work, other, code(secret, clock), "10.0.0.1")
    with work.sessions() as session:
        stored = [s.token_sha256 for s in session.scalars(select(WebSession))]
    assert full not in stored and hashlib.sha256(full.encode()).hexdigest() in stored


def test_a_pending_sign_in_expires(work, clock):
    secret = enrolled(work, clock)
    token = users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    clock.advance(minutes=5)
    with pytest.raises(Unauthenticated, match="sign in again"):
        users.second_factor(work, token, code(secret, clock), "10.0.0.1")


def test_every_refused_sign_in_says_the_same_and_checks_a_hash(work, clock, monkeypatch):
    enrolled(work, clock)
    users.create_user(work, ADMIN, "new", "reviewer")  # invited, no password yet
    enrolled(work, clock, "gone")
    users.disable_user(work, ADMIN, "gone")
    checked = []

    class Spy(PasswordHasher):
        def verify(self, stored, given):
            checked.append(stored)
            return super().verify(stored, given)

    monkeypatch.setattr(users, "HASHER", Spy(time_cost=1, memory_cost=1024, parallelism=1))
    sentences = set()
    for client, (name, password) in enumerate([("nobody", PASSWORD), ("rei", "wrong password!"), ("new", PASSWORD),
                                               ("gone", PASSWORD)]):
        with pytest.raises(Unauthenticated) as refused:
            users.sign_in(work, name, password, f"10.0.0.{client}")
        assert refused.value.reason == "sign_in_failed"
        sentences.add(str(refused.value))
    assert sentences == {users.SIGN_IN_REFUSED} and len(checked) == 4  # an argon2 check each time, real or dummy


def test_failures_lock_a_username_known_or_not_for_a_while(work, clock):
    secret = enrolled(work, clock)
    for name in ("rei", "nobody"):
        for attempt in range(5):
            with pytest.raises(Unauthenticated, match="wrong"):
                users.sign_in(work, name, f"wrong {attempt}", f"10.0.1.{attempt}")
        with pytest.raises(Unauthenticated) as locked:
            users.sign_in(work, name, PASSWORD, "10.0.2.1")
        assert locked.value.reason == "throttled" and "15 minute" in str(locked.value)
    assert [u.status for u in users.list_users(work, ADMIN) if u.username == "rei"] == ["locked"]
    clock.advance(minutes=15)
    token = users.sign_in(work, "rei", PASSWORD, "10.0.2.1")
    token = users.second_factor(work, token, code(secret, clock), "10.0.2.1")
    assert users.signed_in(work, token).username == "rei"
    assert [u.status for u in users.list_users(work, ADMIN) if u.username == "rei"] == ["active"]


def test_wrong_codes_count_toward_the_lock(work, clock):
    secret = enrolled(work, clock)
    token = users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="wrong"):
            users.second_factor(work, token, "000000" if code(secret, clock) != "000000" else "111111", "10.0.0.1")
    with pytest.raises(Unauthenticated) as locked:
        users.second_factor(work, token, code(secret, clock), "10.0.0.1")
    assert locked.value.reason == "throttled"
    assert users.signed_in(work, token, pending_ok=True) is None  # and the pending session is over


def test_a_client_with_many_failures_is_refused_for_every_name(work, clock):
    enrolled(work, clock)
    for attempt in range(20):
        with pytest.raises(Unauthenticated):
            users.sign_in(work, f"guess{attempt % 4}", "whatever it is", "203.0.113.9")
    with pytest.raises(Unauthenticated) as refused:
        users.sign_in(work, "rei", PASSWORD, "203.0.113.9")
    assert refused.value.reason == "throttled"
    assert users.sign_in(work, "rei", PASSWORD, "10.0.0.1")  # another client is not refused


def test_sessions_end_when_idle_or_old_and_on_sign_out(work, clock):
    secret = enrolled(work, clock)
    token = signed_in(work, clock, secret)
    for _ in range(24):  # active all day (11.6 hours): within the idle timeout each time
        clock.advance(minutes=29)
        assert users.signed_in(work, token) is not None
    clock.advance(minutes=25)
    assert users.signed_in(work, token) is None  # 12 hours after signing in
    idle = signed_in(work, clock, secret)
    clock.advance(minutes=30)
    assert users.signed_in(work, idle) is None
    last = signed_in(work, clock, secret)
    users.sign_out(work, last)
    assert users.signed_in(work, last) is None and users.signed_in(work, "made-up") is None
    assert users.signed_in(work, None) is None


def test_disabling_a_user_ends_their_sessions_at_once(work, clock):
    secret = enrolled(work, clock)
    token = signed_in(work, clock, secret)
    pending = users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    with pytest.raises(Forbidden):
        users.disable_user(work, Actor("rei", "reviewer"), "rei")
    with pytest.raises(Conflict):
        users.disable_user(work, ADMIN, "ada")
    with pytest.raises(NotFound):
        users.disable_user(work, ADMIN, "nobody")
    users.disable_user(work, ADMIN, "rei")
    assert users.signed_in(work, token) is None and users.signed_in(work, pending, pending_ok=True) is None
    with pytest.raises(Unauthenticated):
        users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    assert [u.status for u in users.list_users(work, ADMIN)] == ["disabled"]
    users.enable_user(work, ADMIN, "rei")
    assert users.signed_in(work, token) is None  # ended sessions stay ended
    assert users.signed_in(work, signed_in(work, clock, secret)).username == "rei"


def test_a_password_change_ends_the_other_sessions(work, clock):
    secret = enrolled(work, clock)
    here, there = signed_in(work, clock, secret), signed_in(work, clock, secret)
    signed = users.signed_in(work, here)
    with pytest.raises(InvalidInput) as wrong:
        users.change_password(work, signed, "not the password", "a brand new passphrase")
    assert wrong.value.reason == "wrong_password"
    with pytest.raises(InvalidInput, match="at least 12"):
        users.change_password(work, signed, PASSWORD, "too short")
    assert users.signed_in(work, there) is not None  # nothing changed yet
    users.change_password(work, signed, PASSWORD, "a brand new passphrase")
    assert users.signed_in(work, here) is not None and users.signed_in(work, there) is None
    with pytest.raises(Unauthenticated):
        users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    assert users.sign_in(work, "rei", "a brand new passphrase", "10.0.0.1")


def test_guessing_the_current_password_is_throttled_too(work, clock):
    signed = users.signed_in(work, signed_in(work, clock, enrolled(work, clock)))
    for attempt in range(5):
        with pytest.raises(InvalidInput):
            users.change_password(work, signed, f"guess number {attempt}", "a brand new passphrase")
    with pytest.raises(Unauthenticated) as refused:
        users.change_password(work, signed, PASSWORD, "a brand new passphrase")
    assert refused.value.reason == "throttled"


def test_a_reset_invites_the_user_again(work, clock):
    secret = enrolled(work, clock)
    token = signed_in(work, clock, secret)
    invitation = users.reset_user(work, ADMIN, "rei")
    assert users.signed_in(work, token) is None
    with pytest.raises(Unauthenticated):
        users.sign_in(work, "rei", PASSWORD, "10.0.0.1")
    fresh = users.begin_enrolment(work, invitation.token)
    assert fresh.secret != secret
    users.complete_enrolment(work, invitation.token, "another long passphrase", code(fresh.secret, clock))
    clock.advance(seconds=30)
    assert users.sign_in(work, "rei", "another long passphrase", "10.0.0.1")
    assert [u.status for u in users.list_users(work, ADMIN)] == ["active"]


def test_viewing_settings_fall_back_to_the_organisation(work, clock):
    assert users.organisation_settings(work) == users.OrgSettings(24, True, 15, 50, "en")
    secret = enrolled(work, clock)
    token = signed_in(work, clock, secret)
    signed = users.signed_in(work, token)
    assert users.effective_view(signed, users.organisation_settings(work)) == users.ViewSettings(24, True, "en")
    with pytest.raises(Forbidden):
        users.set_organisation_settings(work, signed.actor, blur_radius=30)
    for values, reason in [({"blur_radius": 0}, "bad_blur_radius"), ({"language": "fr"}, "unknown_language"),
                           ({"claim_minutes": 0}, "bad_minutes"), ({"colour": "red"}, "unknown_setting"),
                           ({"greyscale": "yes"}, "bad_greyscale")]:
        with pytest.raises(InvalidInput) as refused:
            users.set_organisation_settings(work, ADMIN, **values)
        assert refused.value.reason == reason
    org = users.set_organisation_settings(work, ADMIN, blur_radius=32, language="ja", claim_minutes=10)
    assert org == users.OrgSettings(32, True, 10, 50, "ja") == users.organisation_settings(work)
    users.set_preferences(work, signed, blur_radius=12, greyscale=False)
    with pytest.raises(InvalidInput):
        users.set_preferences(work, signed, blur_radius=2)
    mine = users.signed_in(work, token)
    assert users.effective_view(mine, org) == users.ViewSettings(12, False, "ja")
    users.set_preferences(work, signed, language="en")
    assert users.effective_view(users.signed_in(work, token), org) == users.ViewSettings(12, False, "en")
    users.set_preferences(work, signed, use_defaults=True)
    assert users.effective_view(users.signed_in(work, token), org) == users.ViewSettings(32, True, "ja")


def test_review_time_is_kept_per_session(work, clock):
    token = signed_in(work, clock, enrolled(work, clock))
    began = users.review_activity(work, token)
    clock.advance(minutes=10)
    assert users.review_activity(work, token) == began == users.signed_in(work, token).review_started_at
    assert users.review_activity(work, token, take_break=True) is None
    assert users.review_activity(work, token) == clock.now


def test_a_long_enough_pause_is_a_break(work, clock):
    """Continuous review (the break reminder's clock) starts again after review_pause_minutes
    without a request; shorter gaps keep it running."""
    token = signed_in(work, clock, enrolled(work, clock))
    began = users.review_activity(work, token)
    for _ in range(4):  # a request every 14 minutes: still the same stretch of review
        clock.advance(minutes=14)
        assert users.signed_in(work, token).review_started_at == began
    clock.advance(minutes=work.settings.web.review_pause_minutes)
    assert users.signed_in(work, token).review_started_at is None  # the session lives on (idle 30 min)
    assert users.review_activity(work, token) == clock.now


def test_the_audit_names_users_and_holds_no_secret(work, clock):
    invitation = users.create_user(work, ADMIN, "rei", "reviewer")
    secret = users.begin_enrolment(work, invitation.token).secret
    users.complete_enrolment(work, invitation.token, PASSWORD, code(secret, clock))
    clock.advance(seconds=30)
    with pytest.raises(Unauthenticated):
        users.sign_in(work, "rei", "a wrong password", "10.0.0.1")
    token = signed_in(work, clock, secret)
    users.sign_out(work, token)
    listed = users.list_users(work, ADMIN)
    assert [(u.username, u.role, u.status, u.created_by) for u in listed] == [("rei", "reviewer", "active", "ada")]
    rows = audit_rows(work)
    assert [(r.action, r.actor, r.outcome) for r in rows] == [
        ("create_user", "ada", "ok"), ("begin_enrolment", "rei", "ok"), ("complete_enrolment", "rei", "ok"),
        ("sign_in", "rei", "rejected"), ("sign_in", "rei", "ok"), ("sign_in", "rei", "ok"), ("sign_out", "rei", "ok"),
        ("list_users", "ada", "ok")]
    assert {r.target for r in rows[:-1]} == {"user:rei"}
    written = str([(r.target, r.details) for r in rows])
    for secret_thing in (invitation.token, secret, PASSWORD, "a wrong password", token):
        assert secret_thing not in written
