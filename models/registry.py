"""The embedders mimamori knows: what each one takes in and gives out.

Vectors of different models never share a Milvus collection (the collection name
carries the model), so everything that depends on the model is looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str
    dimension: int
    input_size: int
    metric: str
    # Cosine similarity above which two faces are taken to be the same person.
    match_threshold: float


EMBEDDERS: dict[str, EmbedderSpec] = {
    spec.name: spec
    for spec in (
        EmbedderSpec("facenet-vggface2", "facenet-vggface2/inception-resnet-v1", 512, 160, "IP", 0.6),
        EmbedderSpec("dlib-resnet", "dlib-resnet/v1", 128, 150, "IP", 0.9),
    )
}


def embedder_spec(name: str) -> EmbedderSpec:
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}") from None
