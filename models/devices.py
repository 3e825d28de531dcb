"""Which torch device a worker uses, and how many CPU threads it may take."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch


def pick_device(preference: str) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def limit_torch_threads(device: torch.device) -> None:
    """On CPU, one torch thread per worker: parallelism comes from workers, not from oversubscription."""
    if device.type == "cpu":
        torch.set_num_threads(1)


class _Float32Precision:
    """Process-wide IEEE float32 for cuDNN and for matrix products, held while any caller is inside
    ``full_float32``: saved on the first entry, put back on the last exit, so overlapping calls from
    several threads neither lose it early nor leave it set.

    Saved, set and put back through PyTorch's ``allow_tf32`` flags (what the H200 run used), unless
    someone set the newer per-operator ``fp32_precision`` settings, which make those flags raise:
    then through those (the two kinds do not mix: PyTorch refuses to read the flags after that).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: tuple = ()
        self.legacy = True

    @staticmethod
    def _per_operator() -> tuple:
        return torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul

    def _read(self) -> tuple:
        try:
            self.legacy = True
            return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        except RuntimeError:  # "a mix of the legacy and new APIs"
            self.legacy = False
            return tuple(setting.fp32_precision for setting in self._per_operator())

    def _write(self, values: tuple | None) -> None:
        """``values`` as ``_read`` gave them, through the same kind of setting; None: no TF32 anywhere."""
        if self.legacy:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = values or (False, False)
            return
        for setting, value in zip(self._per_operator(), values or ("ieee",) * 3, strict=True):
            setting.fp32_precision = value

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.saved = self._read()
                self._write(None)
            self.depth += 1

    def exit(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                self._write(self.saved)


_FLOAT32 = _Float32Precision()


@contextlib.contextmanager
def full_float32(device: torch.device | str) -> Iterator[None]:
    """On CUDA, convolutions and matrix products in IEEE float32 while the detector's nets run.

    PyTorch lets cuDNN round float32 convolutions to TF32 by default. On an H200 that moved
    FastMTCNN's boxes by up to 7.6 px from facenet-pytorch's on the same GPU (a near tie in NMS
    going the other way); in full float32 the two agreed within 1.2e-4 px (docs/benchmarks.md).
    The setting is process-wide: other threads' kernels launched meanwhile also run in full
    float32 (slower, never less exact). On a CPU nothing changes.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    _FLOAT32.enter()
    try:
        yield
    finally:
        _FLOAT32.exit()
