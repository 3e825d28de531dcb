"""A reader for dlib's serialisation format, enough to load a trained dlib DNN (``.dat``).

dlib writes a network with ``serialize(net, out)``: the loss layer, then one version number
per wrapper layer from the outside in, then the input layer, then each layer's details
from the input outwards, each followed by its bookkeeping (setup flags and empty gradient
tensors). Tag and skip layers leave only their version number, so the topology is not in
the file: as in dlib itself, the reader of a file knows the network type it expects, and
this module only turns the bytes into an ordered list of layers with their parameters.

The primitives follow dlib/serialize.h: integers are a length byte (bit 7 = negative)
followed by that many little-endian bytes; floats and doubles are an integer mantissa and
an integer exponent; bools are the characters '0' and '1'; strings are a length and
their bytes; tensors hold four dimensions and raw little-endian float32 data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mimamori.core.errors import Misconfigured


class DlibFormatError(Misconfigured):
    """The file is not a dlib network of a kind this reader knows."""


@dataclass
class DlibLayer:
    kind: str  # the layer's serialisation tag, e.g. "con_4", "affine_", "relu_"
    params: np.ndarray | None = None  # the layer's parameter tensor, flat float32
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    loss: str
    loss_fields: dict[str, float]
    input_kind: str
    input_fields: dict[str, Any]
    layers: list[DlibLayer]  # from the input outwards


class DlibStream:
    """dlib's serialisation primitives over a byte buffer."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _take(self, count: int) -> memoryview:
        if self.pos + count > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer encoding at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        # dlib's float_details: mantissa * 2**exponent; two exponents mark inf and nan.
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf if mantissa >= 0 else -math.inf
        if exponent == 32001:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        char = bytes(self._take(1))
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at byte {self.pos - 1}")
        return char == b"1"

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the current position if there is a plausible one, without consuming it."""
        saved = self.pos
        try:
            length = self.int()
            if not 0 < length <= 64:
                return None
            text = bytes(self._take(length))
            return text.decode("ascii") if text.isascii() and text.replace(b"_", b"").isalnum() else None
        except DlibFormatError:
            return None
        finally:
            self.pos = saved

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"unknown tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        count = math.prod(shape)
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        return (self.int(), self.int(), self.int(), self.int())


def _skip_training_multipliers(stream: DlibStream) -> None:
    """Learning-rate and weight-decay multipliers of weights and biases: training only."""
    for _ in range(4):
        stream.float()


def _read_layer(stream: DlibStream) -> DlibLayer:
    kind = stream.string()
    if kind == "con_4":
        params = stream.tensor()
        fields = {name: stream.int() for name in
                  ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
        fields["filters"], fields["biases"] = stream.alias_tensor(), stream.alias_tensor()
        _skip_training_multipliers(stream)
        return DlibLayer(kind, params, fields)
    if kind == "affine_":
        params = stream.tensor()
        gamma, beta = stream.alias_tensor(), stream.alias_tensor()
        return DlibLayer(kind, params, {"gamma": gamma, "beta": beta, "mode": stream.int()})
    if kind in ("max_pool_2", "avg_pool_2"):
        return DlibLayer(kind, None, {name: stream.int() for name in
                                      ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")})
    if kind in ("relu_", "add_prev_"):
        return DlibLayer(kind)
    if kind == "fc_2":
        fields = {"num_outputs": stream.int(), "num_inputs": stream.int()}
        params = stream.tensor()
        fields["weights"], fields["biases"] = stream.alias_tensor(), stream.alias_tensor()
        fields["bias_mode"] = stream.int()  # 0 = with bias, 1 = fc_no_bias
        _skip_training_multipliers(stream)
        return DlibLayer(kind, params, fields)
    raise DlibFormatError(f"unsupported dlib layer {kind!r} at byte {stream.pos}")


def _skip_layer_state(stream: DlibStream) -> None:
    """A layer's training bookkeeping: three flags and three (empty) gradient/output tensors."""
    for _ in range(3):
        stream.bool()
    for _ in range(3):
        stream.tensor()


def read_network(path: Path | str) -> DlibNetwork:
    """Parse a dlib DNN file into its loss, input and ordered layers; the whole file must parse."""
    stream = DlibStream(Path(path).read_bytes())
    if stream.int() != 1:
        raise DlibFormatError("not a dlib network file (loss layer version)")
    loss = stream.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"unsupported loss layer {loss!r}")
    loss_fields = {"margin": stream.float(), "distance_threshold": stream.float()}

    # One version number per wrapper layer, outermost first, down to the input layer.
    wrappers = 0
    while not (stream.peek_string() or "").startswith("input_"):
        stream.int()
        wrappers += 1
        if wrappers > 10_000:
            raise DlibFormatError("no input layer found")

    input_kind = stream.string()
    if input_kind != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported input layer {input_kind!r}")
    input_fields: dict[str, Any] = {"mean_rgb": (stream.float(), stream.float(), stream.float())}
    input_fields["rows"], input_fields["columns"] = stream.int(), stream.int()

    layers = [_read_layer(stream)]
    _skip_layer_state(stream)
    stream.int()  # the input-side layer also records its sample expansion factor
    while not stream.at_end():
        layers.append(_read_layer(stream))
        _skip_layer_state(stream)
    return DlibNetwork(loss, loss_fields, input_kind, input_fields, layers)
