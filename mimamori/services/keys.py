"""API keys as an audited action: creating and revoking them (the key logic is in services.auth)."""

from __future__ import annotations

from mimamori.core.errors import NotFound
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.auth import add_api_key, revoke_api_keys
from mimamori.services.workspace import Workspace


def create_key(work: Workspace, actor: Actor, name: str, role: str) -> str:
    """A new key for ``name`` with ``role``: returned once, only its hash is kept."""
    with refusals_audited(work.sessions, actor, "create_key", key=name), work.sessions.begin() as session:
        key = add_api_key(session, name, role)
        record(work.sessions, actor, "create_key", target=f"key:{name}", role_granted=role, session=session)
    return key


def revoke_key(work: Workspace, actor: Actor, name: str) -> int:
    """Revoke every key of ``name`` in use; ``unknown_key`` if there is none."""
    # A refusal names the key in its details: ``target`` stays for keys that exist.
    with refusals_audited(work.sessions, actor, "revoke_key", key=name), work.sessions.begin() as session:
        count = revoke_api_keys(session, name)
        if count == 0:
            raise NotFound("unknown_key", f"no key named {name} in use")
        record(work.sessions, actor, "revoke_key", target=f"key:{name}", result_count=count, session=session)
    return count
