"""EmbedFaces' model handler: what it counts for Beam's metrics without pickling the media items."""

from __future__ import annotations

import pytest
import torch

from mimamori.core.config import Settings
from mimamori.transforms.embed import FaceEmbeddingHandler, ItemKeyedHandler


class Unpicklable:
    """A key that fails if anything pickles it (as a media item with its frames is dear to)."""

    def __reduce__(self):
        raise AssertionError("the key was pickled")


def test_a_batchs_bytes_are_its_face_tensors_and_its_keys_are_not_pickled(offline_settings: Settings) -> None:
    handler = ItemKeyedHandler(FaceEmbeddingHandler(offline_settings))
    faces = [torch.zeros((2, 3, 150, 150)), torch.zeros((1, 3, 150, 150))]
    assert handler.get_num_bytes([(Unpicklable(), t) for t in faces]) == sum(t.element_size() * t.nelement()
                                                                           for t in faces)
    # Beam's own handler pickles them: once this fails after a Beam upgrade, the override may go.
    with pytest.raises(AssertionError, match="pickled"):
        super(ItemKeyedHandler, handler).get_num_bytes([(Unpicklable(), t) for t in faces])
