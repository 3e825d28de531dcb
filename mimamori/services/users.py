"""Staff accounts of the workbench: invitations, password and TOTP, sign-in, sessions, settings.

An admin creates a user and hands them a one-time invitation (only its SHA-256 is kept); the
user sets a password (argon2id) and a TOTP second factor (RFC 6238, shown as a QR code) from
it. Signing in takes two steps: the password opens a session that may only submit the code;
the code completes it. Every refusal of a sign-in says the same sentence whether or not the
user exists, and an unknown user's password is checked against a dummy hash, so neither the
answer nor its time tells. Failed sign-ins lock a username, or refuse a client address, for a
while (``Settings.web``). Session tokens are random; the database keeps only their SHA-256.

Every action is audited with the username, never a password, a code, a secret or a token; a
refused sign-in under a name that is no user's is audited as ``unknown`` (people type passwords
into the username field), and throttled under that name's digest. The second factor gives the
session a new token and a new CSRF token. At most ARGON2_AT_ONCE argon2 hashes run at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mimamori.core.config import Settings
from mimamori.core.errors import Conflict, InvalidInput, MimamoriError, NotFound, Unauthenticated
from mimamori.services.access import release_claims, require_admin
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.auth import ROLES
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import ApiKey, CaseAssignment, LoginAttempt, OrganisationSetting, User, WebSession, utcnow

HASHER = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
LANGUAGES = ("en", "ja")
BLUR_RADIUS = (4, 64)  # never 0: images stay blurred until one is revealed
MAX_PASSWORD = 1024  # argon2 takes any length; this bounds the work one request can ask for
SIGN_IN_REFUSED = "the username or password is wrong, or this account cannot sign in now"
TOUCH_EVERY = dt.timedelta(seconds=15)  # a session's last_seen_at is written at most this often

# Argon2id takes 64 MiB per hash (RFC 9106's second recommendation): at most this many at once in
# the process, whatever the number of sign-ins arriving, so a flood of them cannot exhaust memory.
ARGON2_AT_ONCE = 2
_argon2_slots = threading.BoundedSemaphore(ARGON2_AT_ONCE)
UNKNOWN = "unknown"  # the actor of a refused sign-in whose username is no user's: what was typed is not kept

_dummy_hashes: dict[int, str] = {}


@dataclass(frozen=True)
class Invitation:
    username: str
    role: str
    token: str  # shown once: only its SHA-256 is kept
    expires_at: dt.datetime


@dataclass(frozen=True)
class TotpEnrolment:
    username: str
    secret: str  # base32, for typing into an authenticator app by hand
    otpauth_uri: str
    qr_svg: str  # inline SVG of the otpauth URI


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    role: str
    actor: Actor
    csrf_token: str
    language: str | None  # None: the organisation's (see effective_view)
    blur_radius: int | None
    greyscale: bool | None
    second_factor: bool
    review_started_at: dt.datetime | None
    session_id: int | None = None


@dataclass(frozen=True)
class UserView:
    username: str
    role: str
    status: str  # invited, active, locked or disabled
    created_at: dt.datetime
    created_by: str
    invite_expires_at: dt.datetime | None
    locked_until: dt.datetime | None
    disabled_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    cases: list[str]


@dataclass(frozen=True)
class OrgSettings:
    blur_radius: int = 24
    greyscale: bool = True
    claim_minutes: int = 15
    break_minutes: int = 50
    language: str = "en"
    keep_reference_originals: bool = False  # issue 20: store reference media originals, not only hashes


@dataclass(frozen=True)
class ViewSettings:
    blur_radius: int
    greyscale: bool
    language: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_url(settings: Settings, token: str) -> str:
    """The link a new user opens: web.public_url, else the API's own address."""
    base = settings.web.public_url or f"http://{settings.api.bind_address}:{settings.api.port}"
    return f"{base.rstrip('/')}/invite/{token}"


def _target(username: str) -> str:
    return f"user:{username[:200]}"


def _find(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound("unknown_user", f"no user {username}")
    return user


def _end_sessions(session: Session, user_id: int, now: dt.datetime, keep: int | None = None) -> None:
    query = update(WebSession).where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(WebSession.id != keep)
    session.execute(query.values(ended_at=now))


def _invite(user: User, settings: Settings, now: dt.datetime) -> Invitation:
    token = secrets.token_urlsafe(32)
    user.invite_sha256 = _digest(token)
    user.invite_expires_at = now + dt.timedelta(hours=settings.web.invitation_hours)
    return Invitation(user.username, user.role, token, user.invite_expires_at)


# -- accounts (admin) -------------------------------------------------------------------------------
def create_user(work: Workspace, actor: Actor, username: str, role: str) -> Invitation:
    """A new staff user and their one-time invitation (to set a password and TOTP)."""
    with refusals_audited(work.sessions, actor, "create_user", target=_target(username)), \
            work.sessions.begin() as session:
        require_admin(actor)
        if not USERNAME.fullmatch(username):
            raise InvalidInput("bad_username", "a username is 1 to 64 lower-case letters, digits or . _ @ -, "
                                               "starting with a letter or digit")
        if role not in ROLES:
            raise InvalidInput("unknown_role", f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if session.scalars(select(User.id).where(User.username == username)).first() is not None:
            raise Conflict("user_exists", f"user {username} exists already")
        user = User(username=username, role=role, created_by=actor.name)
        session.add(user)
        invitation = _invite(user, work.settings, utcnow())
        record(work.sessions, actor, "create_user", target=_target(username), role_granted=role, session=session)
    return invitation


def reset_user(work: Workspace, actor: Actor, username: str) -> Invitation:
    """Forget the user's password and TOTP, end their sessions, and invite them again."""
    with refusals_audited(work.sessions, actor, "reset_user", target=_target(username)), \
            work.sessions.begin() as session:
        require_admin(actor)
        user = _find(session, username)
        now = utcnow()
        user.password_hash = user.totp_secret = user.last_totp_step = user.locked_until = None
        user.totp_confirmed, user.failed_logins = False, 0
        _end_sessions(session, user.id, now)
        invitation = _invite(user, work.settings, now)
        record(work.sessions, actor, "reset_user", target=_target(username), session=session)
    return invitation


def _set_disabled(work: Workspace, actor: Actor, username: str, disabled: bool) -> None:
    action = "disable_user" if disabled else "enable_user"
    with refusals_audited(work.sessions, actor, action, target=_target(username)), work.sessions.begin() as session:
        require_admin(actor)
        if disabled and username == actor.name:
            raise Conflict("own_account", "you cannot disable your own account; another admin can")
        user = _find(session, username)
        now = utcnow()
        revoked = released = 0
        if disabled:
            user.disabled_at = user.disabled_at or now
            _end_sessions(session, user.id, now)
            released = release_claims(session, username)
            keys = list(session.scalars(select(ApiKey).where(ApiKey.name == username, ApiKey.revoked_at.is_(None))))
            for key in keys:  # a key of the user's name is the same person: it ends with the account
                key.revoked_at = now
            revoked = len(keys)
        else:  # the keys stay revoked: an admin creates a new one if the person needs it
            user.disabled_at = None
        record(work.sessions, actor, action, target=_target(username), session=session,
               **({"released": released} if disabled else {}))
        if revoked:
            record(work.sessions, actor, "revoke_key", target=f"key:{username}", result_count=revoked,
                   because="disable_user", session=session)


def disable_user(work: Workspace, actor: Actor, username: str) -> None:
    """The user can no longer sign in: every session of theirs ends now, their claims are released and
    the API keys of their name are revoked (audited ``revoke_key``); enabling brings no key back."""
    _set_disabled(work, actor, username, True)


def enable_user(work: Workspace, actor: Actor, username: str) -> None:
    _set_disabled(work, actor, username, False)


def _status(user: User, now: dt.datetime) -> str:
    if user.disabled_at is not None:
        return "disabled"
    if not user.totp_confirmed:
        return "invited"
    if user.locked_until is not None and user.locked_until > now:
        return "locked"
    return "active"


def list_users(work: Workspace, actor: Actor) -> list[UserView]:
    """Every staff user with their state and assigned cases (admin)."""
    with refusals_audited(work.sessions, actor, "list_users"):
        require_admin(actor)
    now = utcnow()
    with work.sessions() as session:
        seen = dict(session.execute(select(WebSession.user_id, func.max(WebSession.last_seen_at))
                                    .where(WebSession.second_factor.is_(True)).group_by(WebSession.user_id)).all())
        cases: dict[str, list[str]] = {}
        for row in session.scalars(select(CaseAssignment).order_by(CaseAssignment.case_id)):
            cases.setdefault(row.username, []).append(row.case_id)
        views = [UserView(u.username, u.role, _status(u, now), u.created_at, u.created_by, u.invite_expires_at,
                          u.locked_until, u.disabled_at, seen.get(u.id), cases.get(u.username, []))
                 for u in session.scalars(select(User).order_by(User.username))]
    record(work.sessions, actor, "list_users", result_count=len(views))
    return views


# -- enrolment (the invitation) ---------------------------------------------------------------------
def _invited(session: Session, token: str, now: dt.datetime) -> User:
    user = session.scalars(select(User).where(User.invite_sha256 == _digest(token or ""))).first() if token else None
    if user is None or user.disabled_at is not None or user.invite_expires_at is None \
            or user.invite_expires_at <= now:
        raise Unauthenticated("invitation_invalid", "this invitation is unknown, used or expired; ask an admin "
                                                    "for a new one")
    return user


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


def begin_enrolment(work: Workspace, token: str, *, rotate: bool = True) -> TotpEnrolment:
    """A TOTP secret for an invitation: a new one each time the invitation is opened (``rotate``), so
    the QR code shown last is the one that works and a secret someone else saw earlier (a link
    preview, a shoulder, a log reader holding the link) is worth nothing. ``rotate=False`` shows
    the current one again: the page answering a refused first code, so the user can try again."""
    with work.sessions.begin() as session:
        try:
            user = _invited(session, token, utcnow())
        except Unauthenticated as error:
            record(work.sessions, Actor("anonymous", "-"), "begin_enrolment", outcome="rejected", reason=error.reason)
            error.audited = True
            raise
        if rotate or user.totp_secret is None:
            user.totp_secret = pyotp.random_base32()
        username, role, secret = user.username, user.role, user.totp_secret
        record(work.sessions, Actor(username, role), "begin_enrolment", target=_target(username), session=session)
    uri = _totp(secret).provisioning_uri(name=username, issuer_name=work.settings.web.totp_issuer)
    return TotpEnrolment(username, secret, uri, segno.make(uri, error="m").svg_inline(scale=4))


def check_password(settings: Settings, username: str, password: str) -> None:
    """The password policy: long enough, bounded, and not the username."""
    if len(password) < settings.web.min_password_length:
        raise InvalidInput("password_too_short",
                           f"a password has at least {settings.web.min_password_length} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput("password_too_long", f"a password has at most {MAX_PASSWORD} characters")
    name = username.lower()
    if password.lower() == name or (len(name) >= 3 and name in password.lower()):
        raise InvalidInput("password_has_username", "a password must not be or contain the username")


def _code_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step (of now, the one before or the one after) whose code ``code`` is, else None."""
    code = (code or "").replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp, current = _totp(secret), _totp(secret).timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _use_step(session: Session, user_id: int, step: int) -> bool:
    """Record ``step`` as used, atomically; False if it (or a later one) was used already."""
    result = session.execute(update(User).where(User.id == user_id).where(
        (User.last_totp_step.is_(None)) | (User.last_totp_step < step)).values(last_totp_step=step))
    return result.rowcount == 1


def complete_enrolment(work: Workspace, token: str, password: str, code: str) -> None:
    """Set the password and confirm the TOTP secret with a first code; the invitation is then used up."""
    actor = Actor("anonymous", "-")
    try:
        with work.sessions.begin() as session:
            now = utcnow()
            user = _invited(session, token, now)
            actor = Actor(user.username, user.role)
            if user.totp_secret is None:
                raise Conflict("enrolment_not_begun", "open the invitation first to get the TOTP secret")
            check_password(work.settings, user.username, password)
            step = _code_step(user.totp_secret, code, now)
            if step is None or not _use_step(session, user.id, step):
                raise InvalidInput("wrong_code", "the code does not match the secret; check the authenticator "
                                                 "app's clock and try the next code")
            user.password_hash, user.password_changed_at = _hash(password), now
            user.totp_confirmed, user.invite_sha256, user.invite_expires_at = True, None, None
            user.failed_logins, user.locked_until = 0, None
    except MimamoriError as error:
        _audit_refusal(work, actor, "complete_enrolment", error)
        raise
    record(work.sessions, actor, "complete_enrolment", target=_target(actor.name))


def _audit_refusal(work: Workspace, actor: Actor, action: str, error: MimamoriError, **details: Any) -> None:
    """A refusal audited under the name it concerns (known only inside the transaction)."""
    if not error.audited:
        record(work.sessions, actor, action, target=_target(actor.name) if actor.role != "-" else None,
               outcome="rejected", reason=error.reason, **details)
        error.audited = True


# -- sign-in and its throttle -----------------------------------------------------------------------
def _lock_end(times: list[dt.datetime], limit: int, window: dt.timedelta, lockout: dt.timedelta) -> dt.datetime | None:
    """When the latest lock ends: one starts at each failure that makes ``limit`` within ``window``."""
    end = None
    for i in range(limit - 1, len(times)):
        if times[i] - times[i - limit + 1] <= window:
            end = times[i] + lockout
    return end


def _lock_ends(session: Session, settings: Settings, username: str, client: str,
               now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Until when this username and this client are refused (None: not now); unknown names alike.

    A username's failures count from its last complete sign-in; a client's do not reset.
    """
    web = settings.web
    window, lockout = dt.timedelta(minutes=web.throttle_window_minutes), dt.timedelta(minutes=web.lockout_minutes)
    since = now - window - lockout
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(LoginAttempt.username == username,
                                                                     LoginAttempt.ok.is_(True)))
    failures = select(LoginAttempt.at).where(LoginAttempt.ok.is_(False)).order_by(LoginAttempt.at)
    by_user = failures.where(LoginAttempt.username == username, LoginAttempt.at >= max(since, last_ok or since))
    by_client = failures.where(LoginAttempt.client == client, LoginAttempt.at >= since)
    user_end = _lock_end(list(session.scalars(by_user)), web.max_failures_per_user, window, lockout)
    client_end = _lock_end(list(session.scalars(by_client)), web.max_failures_per_client, window, lockout)
    return (user_end if user_end and user_end > now else None, client_end if client_end and client_end > now else None)


def _throttled(session: Session, settings: Settings, username: str, client: str,
               now: dt.datetime) -> dt.datetime | None:
    ends = [end for end in _lock_ends(session, settings, username, client, now) if end is not None]
    return max(ends) if ends else None


def _refuse_throttled(until: dt.datetime) -> Unauthenticated:
    minutes = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
    return Unauthenticated("throttled", f"too many failed sign-ins; try again in {minutes} minute(s)")


def _attempt_name(username: str, user: User | None) -> str:
    """The name a sign-in attempt is throttled under: the username if it is a user's, else its digest
    (a password typed into the username field is not kept in the clear)."""
    return username if user is not None else "?" + _digest(username)[:40]


def _failed(session: Session, settings: Settings, username: str, client: str, now: dt.datetime,
            user: User | None) -> None:
    """Remember a failure; a user it locks is marked locked (for the admin's list).

    The same statements whether or not ``username`` is a user's (the UPDATE then changes no row),
    so the time a refusal takes does not tell either.
    """
    name = _attempt_name(username, user)
    session.add(LoginAttempt(username=name, client=client, at=now, ok=False))
    session.flush()
    user_end, _client_end = _lock_ends(session, settings, name, client, now)
    values: dict[str, Any] = {"failed_logins": func.coalesce(User.failed_logins, 0) + 1}
    if user_end is not None:
        values["locked_until"] = user_end
    session.execute(update(User).where(User.username == username).values(**values)
                    .execution_options(synchronize_session=False))
    if user is not None:
        session.expire(user, ["failed_logins", "locked_until"])


def _hash(password: str) -> str:
    with _argon2_slots:
        return HASHER.hash(password)


def _verify(stored: str, password: str) -> None:
    with _argon2_slots:
        HASHER.verify(stored, password)


def _dummy_hash() -> str:
    """A hash made with HASHER's own parameters, so checking it takes as long as a real one."""
    key = id(HASHER)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = _hash(secrets.token_urlsafe(16))
    return _dummy_hashes[key]


def _password_ok(user: User | None, password: str) -> bool:
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    try:
        _verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and user.password_hash is not None


def _clean(username: str, client: str) -> tuple[str, str]:
    return (username or "").strip().lower()[:200], (client or "-")[:100]


def _new_session(session: Session, settings: Settings, user: User, now: dt.datetime) -> str:
    """A session whose second factor is pending; its token (only the SHA-256 is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_sha256=_digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                           second_factor=False, created_at=now, last_seen_at=now,
                           expires_at=now + dt.timedelta(minutes=settings.web.second_factor_minutes)))
    return token


def sign_in(work: Workspace, username: str, password: str, client: str, previous: str | None = None) -> str:
    """Check the password; a session token whose second factor is still pending (see second_factor).

    Throttled before the password is checked; every other refusal is one sentence (SIGN_IN_REFUSED).
    ``previous``: the session token the browser still holds, ended when this sign-in succeeds. A
    refusal for a username that is no user's is audited as ``unknown``, without what was typed.
    """
    username, client = _clean(username, client)
    actor, token, error = Actor(UNKNOWN, "-"), None, None
    with work.sessions.begin() as session:
        now = utcnow()
        user = session.scalars(select(User).where(User.username == username)).first()
        actor = Actor(username, user.role) if user is not None else actor
        until = _throttled(session, work.settings, _attempt_name(username, user), client, now)
        if until is not None:
            error = _refuse_throttled(until)
        elif _password_ok(user, password) and user.disabled_at is None and user.totp_confirmed:
            if HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = _hash(password)
            token = _new_session(session, work.settings, user, now)
            if previous:
                session.execute(update(WebSession).where(WebSession.token_sha256 == _digest(previous),
                                                         WebSession.ended_at.is_(None)).values(ended_at=now))
        else:
            _failed(session, work.settings, username, client, now, user)
            error = Unauthenticated("sign_in_failed", SIGN_IN_REFUSED)
    if error is not None:
        _audit_refusal(work, actor, "sign_in", error, client=client, step="password")
        raise error
    record(work.sessions, actor, "sign_in", target=_target(username), client=client, step="password")
    return token


def _live_session(session: Session, token: str, now: dt.datetime) -> WebSession | None:
    if not token:
        return None
    found = session.scalars(select(WebSession).where(WebSession.token_sha256 == _digest(token))).first()
    if found is None or found.ended_at is not None or found.expires_at <= now or found.user.disabled_at is not None:
        return None
    return found


def second_factor(work: Workspace, token: str, code: str, client: str) -> str:
    """Complete a sign-in with a TOTP code: the session becomes a full one (a code is used once).

    Returns the session's new token: the full session gets a new token and a new CSRF token, so
    whatever learnt the pending one (or the form token before it) holds nothing of the signed-in one.
    """
    client = _clean("", client)[1]
    actor, error, new_token = Actor("anonymous", "-"), None, secrets.token_urlsafe(32)
    with work.sessions.begin() as session:
        now = utcnow()
        found = _live_session(session, token, now)
        if found is None or found.second_factor:
            error = Unauthenticated("session_expired", "sign in again with your password")
        else:
            user = found.user
            actor = Actor(user.username, user.role)
            until = _throttled(session, work.settings, user.username, client, now)
            step = _code_step(user.totp_secret or "", code, now) if until is None else None
            if until is not None:
                found.ended_at = now
                error = _refuse_throttled(until)
            elif step is None or not _use_step(session, user.id, step):
                _failed(session, work.settings, user.username, client, now, user)
                error = Unauthenticated("wrong_code", "the code is wrong or was used already; wait for the next "
                                                      "one and try again")
            else:
                session.add(LoginAttempt(username=user.username, client=client, at=now, ok=True))
                user.failed_logins, user.locked_until = 0, None
                found.second_factor, found.last_seen_at = True, now
                found.token_sha256, found.csrf_token = _digest(new_token), secrets.token_urlsafe(32)
                found.expires_at = now + dt.timedelta(hours=work.settings.web.session_absolute_hours)
    if error is not None:
        _audit_refusal(work, actor, "sign_in", error, client=client, step="code")
        raise error
    record(work.sessions, actor, "sign_in", target=_target(actor.name), client=client, step="code")
    return new_token


# -- sessions ---------------------------------------------------------------------------------------
def signed_in(work: Workspace, token: str | None, *, pending_ok: bool = False) -> SignedIn | None:
    """Who holds this session token, or None (unknown, expired, idle too long, ended, user disabled).

    A session whose second factor is pending counts only with ``pending_ok`` (the code page).
    """
    with work.sessions.begin() as session:
        now = utcnow()
        found = _live_session(session, token or "", now)
        idle = dt.timedelta(minutes=work.settings.web.session_idle_minutes)
        if found is None or found.last_seen_at + idle <= now or not (found.second_factor or pending_ok):
            return None
        pause = dt.timedelta(minutes=work.settings.web.review_pause_minutes)
        if found.review_started_at is not None and now - found.last_seen_at >= pause:
            found.review_started_at = None  # away that long: a break; continuous review starts again
        if now - found.last_seen_at >= TOUCH_EVERY:
            found.last_seen_at = now
        user = found.user
        return SignedIn(user.id, user.username, user.role, Actor(user.username, user.role), found.csrf_token,
                        user.language, user.blur_radius, user.greyscale, found.second_factor,
                        found.review_started_at, found.id)


def review_activity(work: Workspace, token: str, *, take_break: bool = False) -> dt.datetime | None:
    """When this session's continuous review began (set now if not yet); ``take_break`` starts it over."""
    with work.sessions.begin() as session:
        found = _live_session(session, token, utcnow())
        if found is None:
            return None
        if take_break:
            found.review_started_at = None
        elif found.review_started_at is None:
            found.review_started_at = utcnow()
        return found.review_started_at


def sign_out(work: Workspace, token: str) -> None:
    with work.sessions.begin() as session:
        found = _live_session(session, token, utcnow())
        actor = Actor(found.user.username, found.user.role) if found is not None else None
        if found is not None:
            found.ended_at = utcnow()
            record(work.sessions, actor, "sign_out", target=_target(actor.name), session=session)


def change_password(work: Workspace, signed: SignedIn, old: str, new: str) -> None:
    """A new password (the old one checked, throttled like a sign-in); the user's other sessions end."""
    actor = signed.actor
    client = f"account:{signed.username}"[:100]  # the user's own: one user's mistakes block no one else
    with refusals_audited(work.sessions, actor, "change_password", target=_target(signed.username)):
        with work.sessions.begin() as session:
            now = utcnow()
            until = _throttled(session, work.settings, signed.username, client, now)
            user = session.get(User, signed.user_id) if until is None else None
            ok = user is not None and _password_ok(user, old)
            if until is None and not ok:
                _failed(session, work.settings, signed.username, client, now, user)
        if until is not None:
            raise _refuse_throttled(until)
        if not ok:
            raise InvalidInput("wrong_password", "the current password is wrong")
        check_password(work.settings, signed.username, new)
        with work.sessions.begin() as session:
            user = session.get(User, signed.user_id)
            user.password_hash, user.password_changed_at = _hash(new), utcnow()
            _end_sessions(session, user.id, utcnow(), keep=signed.session_id)
            record(work.sessions, actor, "change_password", target=_target(signed.username), session=session)


# -- viewing preferences and organisation settings --------------------------------------------------
def _check_view(language: Any, blur_radius: Any, greyscale: Any) -> None:
    if language is not None and language not in LANGUAGES:
        raise InvalidInput("unknown_language", f"languages: {', '.join(LANGUAGES)}")
    if blur_radius is not None and (isinstance(blur_radius, bool) or not isinstance(blur_radius, int)
                                    or not BLUR_RADIUS[0] <= blur_radius <= BLUR_RADIUS[1]):
        raise InvalidInput("bad_blur_radius", f"a blur radius is a whole number from {BLUR_RADIUS[0]} to "
                                              f"{BLUR_RADIUS[1]}")
    if greyscale is not None and not isinstance(greyscale, bool):
        raise InvalidInput("bad_greyscale", "greyscale is true or false")


def set_preferences(work: Workspace, signed: SignedIn, *, language: str | None = None, blur_radius: int | None = None,
                    greyscale: bool | None = None, use_defaults: bool = False) -> None:
    """The user's own viewing settings (None leaves one as it is; ``use_defaults`` clears all first)."""
    with refusals_audited(work.sessions, signed.actor, "set_preferences", target=_target(signed.username)):
        _check_view(language, blur_radius, greyscale)
        with work.sessions.begin() as session:
            user = session.get(User, signed.user_id)
            if use_defaults:
                user.language = user.blur_radius = user.greyscale = None
            for name, value in (("language", language), ("blur_radius", blur_radius), ("greyscale", greyscale)):
                if value is not None:
                    setattr(user, name, value)
            record(work.sessions, signed.actor, "set_preferences", target=_target(signed.username), session=session,
                   language=language, blur_radius=blur_radius, greyscale=greyscale, use_defaults=use_defaults)


def organisation_settings(work: Workspace) -> OrgSettings:
    """The organisation's defaults: what is stored, the built-in default for the rest."""
    with work.sessions() as session:
        stored = {row.key: row.value for row in session.scalars(select(OrganisationSetting))}
    return OrgSettings(**{key: value for key, value in stored.items() if key in OrgSettings.__dataclass_fields__})


def set_organisation_settings(work: Workspace, actor: Actor, **values: Any) -> OrgSettings:
    """Change organisation defaults (admin): blur_radius, greyscale, claim_minutes, break_minutes, language."""
    with refusals_audited(work.sessions, actor, "set_organisation_settings"):
        require_admin(actor)
        unknown = sorted(set(values) - set(OrgSettings.__dataclass_fields__))
        if unknown:
            raise InvalidInput("unknown_setting", f"unknown setting(s) {', '.join(unknown)}; settings: "
                                                  f"{', '.join(OrgSettings.__dataclass_fields__)}")
        _check_view(values.get("language"), values.get("blur_radius"), values.get("greyscale"))
        for name in ("claim_minutes", "break_minutes"):
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 480):
                raise InvalidInput("bad_minutes", f"{name} is a whole number of minutes from 1 to 480")
        with work.sessions.begin() as session:
            for key, value in values.items():
                if value is None:
                    continue
                row = session.get(OrganisationSetting, key)
                if row is None:
                    session.add(OrganisationSetting(key=key, value=value, changed_by=actor.name, changed_at=utcnow()))
                else:
                    row.value, row.changed_by, row.changed_at = value, actor.name, utcnow()
            record(work.sessions, actor, "set_organisation_settings", session=session,
                   **{k: v for k, v in values.items() if v is not None})
    return organisation_settings(work)


def effective_view(signed: SignedIn, org: OrgSettings) -> ViewSettings:
    """What this user sees with: their own settings where set, the organisation's elsewhere."""
    return ViewSettings(signed.blur_radius if signed.blur_radius is not None else org.blur_radius,
                        signed.greyscale if signed.greyscale is not None else org.greyscale,
                        signed.language or org.language)
