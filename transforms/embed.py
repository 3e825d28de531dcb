"""Embed aligned faces with Beam's RunInference and a keyed PyTorch model handler.

Each element is (media item, tensor of that item's faces); RunInference batches elements
by their number of faces (BatchElements weighs each element by
``element_size_fn``: at most ``max_faces_per_batch`` faces), the inference function concatenates
the batch into one tensor, runs the embedder once (fp16 on a GPU), and splits the vectors
back per item. Vectors are L2-normalised; the model version goes with every one of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import torch
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.ml.inference.pytorch_inference import PytorchModelHandlerTensor

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.models.devices import limit_torch_threads, pick_device
from mimamori.models.embedders import embed_chips, load_embedder, prepare_for_device
from mimamori.transforms.elements import MediaItem


def faces_tensor(item: MediaItem) -> torch.Tensor:
    """The item's aligned faces as one uint8 N x 3 x H x W tensor."""
    arrays = np.stack([np.asarray(face.aligned, dtype=np.uint8) for face in item.faces])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def _faces_in(element: Any) -> int:
    tensor = element[1] if isinstance(element, tuple) else element
    return int(tensor.shape[0])


def embed_batch(batch: Sequence[torch.Tensor], model: torch.nn.Module, device: str,
                inference_args: dict[str, Any] | None = None, model_id: str | None = None
                ) -> Iterable[PredictionResult]:
    counts = [t.shape[0] for t in batch]
    metrics.BATCH_SIZE.labels(stage="embed").observe(sum(counts))
    target = torch.device(device) if isinstance(device, str) else device
    with metrics.stage_timer("embed"):
        vectors = embed_chips(model, torch.cat(list(batch)), target)
        if target.type == "cuda":
            _sample_gpu_utilization(target)
        outputs = np.split(vectors, np.cumsum(counts)[:-1])
    metrics.STAGE_ELEMENTS.labels(stage="embed").inc(len(batch))  # media items, as the other stages count
    return [PredictionResult(example, inference, model_id) for example, inference in zip(batch, outputs, strict=True)]


def _sample_gpu_utilization(device: torch.device) -> None:
    # NVML through pynvml (the nvidia-ml-py package, installed with mimamori); a metric never fails a batch.
    with contextlib.suppress(Exception):
        metrics.GPU_UTILIZATION.labels(device=str(device)).set(torch.cuda.utilization(device) / 100.0)


class FaceEmbeddingHandler(PytorchModelHandlerTensor):
    """Loads the configured embedder (weights from a path, or a marked random init for tests)."""

    def __init__(self, settings: Settings, max_faces_per_batch: int = 64):
        self.settings = settings
        device = pick_device(settings.models.device)
        # A fixed batch weight: BatchElements' adaptive size starts at one, and an element that
        # weighs more than the current size would make it emit an empty batch. One media item
        # holds at most max_faces_per_image faces, so it always fits.
        weight = max(max_faces_per_batch, settings.models.detector.max_faces_per_image)
        super().__init__(device="GPU" if device.type == "cuda" else "CPU", inference_fn=embed_batch,
                         element_size_fn=_faces_in, min_batch_size=weight, max_batch_size=weight)

    def load_model(self) -> torch.nn.Module:
        limit_torch_threads(self._device)
        metrics.WORKER_DEVICE.labels(device=self._device.type).set(1)
        return prepare_for_device(load_embedder(self.settings.models.embedder).module, self._device)


class ItemKeyedHandler(KeyedModelHandler):
    """The face handler keyed by the media item whose faces a tensor holds.

    Beam's KeyedModelHandler counts a batch's bytes (for its inference_request_batch_byte_size metric) by
    pickling its keys: here media items with their decoded frames, megabytes each, pickled only to
    be measured, holding the interpreter's lock beside detection. The keys never leave this fused
    stage, so only the face tensors' bytes are counted (all of them: Beam's tensor handler counts
    one element's size a row). One model only: Beam's per-key model mappings are not used here.
    """

    def get_num_bytes(self, batch: Sequence[tuple[MediaItem, torch.Tensor]]) -> int:
        return sum(faces.element_size() * faces.nelement() for _item, faces in batch)


class EmbedFaces(beam.PTransform):
    """MediaItem (with aligned faces) -> the same item with ``embeddings`` set."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return (
            items
            | "KeyByItem" >> beam.Map(lambda item: (item, faces_tensor(item))).with_output_types(
                beam.typehints.Tuple[MediaItem, Any])
            | "RunInference" >> RunInference(ItemKeyedHandler(FaceEmbeddingHandler(self.settings)))
            | "AttachEmbeddings" >> beam.MapTuple(_attach)
        )


def _attach(item: MediaItem, result: PredictionResult) -> MediaItem:
    item.embeddings = np.asarray(result.inference, dtype=np.float32)
    return item
