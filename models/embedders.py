"""Build the configured face embedder as a torch module, with its version string.

Weights load from a configured path. Pretrained FaceNet weights cannot be downloaded at
run time (and never are): a test may ask for a deterministic random initialisation, which
is marked in the version string stored with every vector; the production profile refuses
to start without real weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimamori.config import EmbedderConfig
from models.registry import EmbedderSpec, embedder_spec

RANDOM_INIT_SEED = 20191231


class MissingWeightsError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedEmbedder:
    spec: EmbedderSpec
    version: str
    module: torch.nn.Module


class FaceNetEmbedder(torch.nn.Module):
    """InceptionResnetV1 on 160x160 RGB in [0, 255]; outputs L2-normalised 512-d vectors."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # facenet-pytorch's fixed_image_standardization
        return torch.nn.functional.normalize(self.net((images - 127.5) / 128.0), dim=1)


def embedder_version(config: EmbedderConfig) -> str:
    """The version string stored with every vector (says so when weights are random)."""
    spec = embedder_spec(config.name)
    if config.weights_path is None:
        return f"{spec.version}@random-init-{RANDOM_INIT_SEED}"
    return f"{spec.version}@{config.weights_path.name}"


def load_embedder(config: EmbedderConfig) -> LoadedEmbedder:
    spec = embedder_spec(config.name)
    if config.name != "facenet-vggface2":
        raise NotImplementedError(f"embedder {config.name} is not available in this build")
    if config.weights_path is None:
        if not config.allow_random_weights:
            raise MissingWeightsError(
                "no weights for facenet-vggface2: set models.embedder.weights_path "
                "(MIMAMORI_MODELS__EMBEDDER__WEIGHTS_PATH) to the VGGFace2 state dict "
                "(20180402-114759-vggface2.pt from the facenet-pytorch releases, downloaded once "
                "and baked into the worker image; see docs/models.md)"
            )
        torch.manual_seed(RANDOM_INIT_SEED)
        module = FaceNetEmbedder()
    else:
        module = FaceNetEmbedder()
        state = torch.load(config.weights_path, map_location="cpu", weights_only=True)
        # The released file holds the classifier too; the embedding network ignores it.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        module.net.load_state_dict(state, strict=False)
    return LoadedEmbedder(spec, embedder_version(config), module.eval())
