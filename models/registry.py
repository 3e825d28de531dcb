"""The embedders mimamori knows: what each one takes in and gives out.

Vectors of different models never share a Milvus collection (the collection name
carries the model), so everything that depends on the model is looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The five landmarks (left eye, right eye, nose, left and right mouth corner) of a frontal
# face in a 112x112 crop: the reference layout used by ArcFace-style alignment.
FIVE_POINT_TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str
    dimension: int
    input_size: int
    metric: str
    # Share of the crop added around the template on each side (context for the network).
    margin: float
    # Cosine similarity above which two faces are taken to be the same person.
    match_threshold: float
    template: tuple[tuple[float, float], ...] = FIVE_POINT_TEMPLATE_112

    def landmarks_in_crop(self) -> list[tuple[float, float]]:
        """Where the five landmarks go in this embedder's input crop, margin included."""
        inner = self.input_size / (1.0 + 2.0 * self.margin)
        offset = inner * self.margin
        return [(offset + x / 112.0 * inner, offset + y / 112.0 * inner) for x, y in self.template]


EMBEDDERS: dict[str, EmbedderSpec] = {
    spec.name: spec
    for spec in (
        EmbedderSpec("facenet-vggface2", "facenet-vggface2/inception-resnet-v1", 512, 160, "IP", 0.1, 0.6),
        EmbedderSpec("dlib-resnet", "dlib-resnet/v1", 128, 150, "IP", 0.25, 0.9),
    )
}


def embedder_spec(name: str) -> EmbedderSpec:
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}") from None
