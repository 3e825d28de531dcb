"""API keys (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from mimamori.api.schemas import KeyIn, KeyOut
from mimamori.api.security import Admin, Work
from mimamori.services import keys

router = APIRouter(tags=["admin"])


@router.post("/keys", status_code=201, response_model=KeyOut)
def new_key(body: KeyIn, actor: Admin, work: Work) -> KeyOut:
    return KeyOut(name=body.name, role=body.role, key=keys.create_key(work, actor, body.name, body.role))


@router.delete("/keys/{name}")
def revoke_key(name: Annotated[str, Path(min_length=1, max_length=200)], actor: Admin, work: Work) -> dict[str, Any]:
    return {"name": name, "revoked": keys.revoke_key(work, actor, name)}
