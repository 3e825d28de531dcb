"""Which model's face collection search reads: list, promote (with its policy) and roll back.

Each model has its own face collection; a search alias points at one. Promoting a model
points the alias at its collection, but not before its backfill has reached every media
item the current model has processed, or search would miss what the current model finds.
Every change is recorded (``AliasChange``) and audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from mimamori.core.errors import Conflict
from mimamori.models.registry import embedder_spec
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import AliasChange
from mimamori.stores.faces import (
    alias_target,
    ensure_face_collection,
    face_collections,
    point_search_alias,
    search_alias,
    search_collection,
)
from mimamori.stores.media import ensure_media_collections
from mimamori.stores.milvus import count_entities


@dataclass(frozen=True)
class FaceCollection:
    name: str
    faces: int
    searched: bool  # the search alias points here


@dataclass(frozen=True)
class AliasMove:
    alias: str
    collection: str
    model: str
    previous: str | None


def list_collections(work: Workspace) -> list[FaceCollection]:
    target = alias_target(work.settings)
    return [FaceCollection(name, faces, name == target) for name, faces in face_collections(work.settings)]


def promotion_refusal(model: str, collection: str, faces: int, current_model: str, media: int,
                      current_media: int) -> Conflict | None:
    """Why ``model`` may not be promoted yet (None: it may): an empty collection, or a backfill
    that has processed fewer media than the model search reads now."""
    if faces == 0:
        return Conflict("collection_empty", f"{collection} holds no faces: replay with --model {model} first "
                                            "(or --force)")
    if current_model != model and media < current_media:
        return Conflict("backfill_incomplete", f"{model} has processed {media} media, {current_model} (which search "
                                               f"reads now) {current_media}: finish the backfill (mimamori replay "
                                               f"--model {model}) first (or --force)")
    return None


def promote(work: Workspace, actor: Actor, model: str, force: bool = False) -> AliasMove:
    """Point search at ``model``'s collection, unless the policy above refuses (``force`` overrides)."""
    with refusals_audited(work.sessions, actor, "point_search_alias", target=f"model:{model}"):
        collection = _promotable(work, model, force)
    return _move_alias(work, actor, collection, model)


def _promotable(work: Workspace, model: str, force: bool) -> str:
    """The collection of ``model`` if it may be promoted now."""
    settings = work.settings
    embedder_spec(model)  # an unknown model is refused before anything is counted
    collection = ensure_face_collection(settings, model)
    current_model = search_collection(settings)[1]

    faces = count_entities(collection, consistency_level="Strong")
    if not force:
        media = current_media = 0  # compared only when another model's collection holds faces
        if faces and current_model != model:
            media, current_media = (count_entities(ensure_media_collections(settings, name)[0],
                                                   consistency_level="Strong") for name in (model, current_model))
        refusal = promotion_refusal(model, collection.name, faces, current_model, media, current_media)
        if refusal is not None:
            raise refusal
    return collection.name


def rollback(work: Workspace, actor: Actor) -> AliasMove:
    """Point search back where it pointed before the last change."""
    with work.sessions() as session:
        changes = list(session.scalars(select(AliasChange).where(AliasChange.alias == search_alias(work.settings))
                                       .order_by(AliasChange.id.desc()).limit(2)))
    with refusals_audited(work.sessions, actor, "point_search_alias", target="rollback"):
        if len(changes) < 2:
            raise Conflict("nothing_to_roll_back", "nothing to roll back to (the search alias was set once or never)")
    previous = changes[1]
    return _move_alias(work, actor, previous.collection, previous.model)


def _move_alias(work: Workspace, actor: Actor, collection: str, model: str) -> AliasMove:
    alias, before = search_alias(work.settings), alias_target(work.settings)
    point_search_alias(work.settings, collection)
    with work.sessions.begin() as session:
        session.add(AliasChange(alias=alias, collection=collection, model=model, actor=actor.name))
    record(work.sessions, actor, "point_search_alias", target=collection, model=model)
    return AliasMove(alias, collection, model, before)
