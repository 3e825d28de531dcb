"""API keys and roles.

A key is 32 random bytes (``mmk_`` + URL-safe base64); the database keeps only its SHA-256,
which is enough for a secret of that entropy (a slow password hash guards guessable
secrets, not random ones). Each key has one role; a person who needs two roles holds two
keys, so every audit row says in which capacity an action was taken.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mimamori.core.errors import InvalidInput
from mimamori.services.audit import Actor
from mimamori.stores.cases import ApiKey, utcnow

ROLES = ("admin", "reviewer", "auditor")
KEY_PREFIX = "mmk_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(sessions: sessionmaker, name: str, role: str) -> str:
    """Create a key and return it: it is shown once and cannot be recovered."""
    with sessions.begin() as session:
        return add_api_key(session, name, role)


def add_api_key(session: Session, name: str, role: str) -> str:
    """``create_api_key`` in the caller's transaction (its audit row commits with it)."""
    if role not in ROLES:
        raise InvalidInput("unknown_role", f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, role=role, key_sha256=_digest(key)))
    return key


def revoke_api_key(sessions: sessionmaker, name: str) -> int:
    with sessions.begin() as session:
        return revoke_api_keys(session, name)


def revoke_api_keys(session: Session, name: str) -> int:
    """``revoke_api_key`` in the caller's transaction."""
    keys = list(session.scalars(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))))
    for key in keys:
        key.revoked_at = utcnow()
    return len(keys)


def authenticate(sessions: sessionmaker, key: str | None) -> Actor | None:
    if not key or not key.startswith(KEY_PREFIX):
        return None
    with sessions() as session:
        found = session.scalars(select(ApiKey).where(ApiKey.key_sha256 == _digest(key),
                                                     ApiKey.revoked_at.is_(None))).first()
    return Actor(found.name, found.role) if found else None
