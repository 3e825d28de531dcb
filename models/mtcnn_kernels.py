"""FastMTCNN's resampling and its nets' first PReLU and pooling as compiled loops (numba), for the CPU.

On one CPU core FastMTCNN spent more time outside the networks' convolutions than in them: in
a profile of ``bench/pipeline.py``'s 40 images (2026-12-04, docs/benchmarks.md) the pyramid's
gathers took 2.0 s, P-Net's first PReLU and 2x2 pooling over its 10-channel full-resolution map
1.0 s, the candidate crops and their integral image 0.8 s, against 1.1 s for P-Net's three
convolutions. Each of those is one pass over memory when written as a loop, and many passes (a
temporary tensor each) when written as PyTorch operations. The loops compute the same numbers
with the same float32 operations in the same order, so their outputs are bit for bit those of
the PyTorch code they replace (``tests/unit/test_mtcnn_kernels.py``):

* ``integral`` and ``area_crops``: ``(interpolate(x, size, mode="area") - 127.5) * 0.0078125`` of
  an 8-bit RGB image or a region of it (PyTorch's adaptive average pooling): integer window sums
  from an integral image (exact), then ``sum / kh / kw`` in float32. The pyramid's levels and
  the R-Net and O-Net crops.
* ``prelu_pool``: PReLU, then (on P-Net's canvas) the first-layer outputs that read across a
  level's edge set to ``outside``, then ``max_pool2d(k, 2, ceil_mode=True)``: P-Net's first layer
  (k = 2) and R-Net's and O-Net's (k = 3).

"Bit for bit" holds while a window's float32 sum is exact in PyTorch too (under 2**24, about 65,000
pixels a window: a level of an image whose short side is under about 3,000 px; the detector scales
frames to 1280 px); beyond it the loops' exact integer sums are the closer of the two.

numba compiles each function once (``warm``, when a FastMTCNN is built) and caches the machine code
beside this file, or in numba's user cache where that is read-only, or nowhere where neither is
writable (then each process compiles); ``nogil`` lets the pipeline's read-ahead threads run while a
detection is in a loop. The loops read their tables unchecked, so their callers check the bounds.
The CUDA path keeps the PyTorch operations.
"""

from __future__ import annotations

import numba
import numpy as np


def _compiled(func):
    """``numba.njit`` with its machine code cached on disk, or compiled in each process where no cache
    directory is writable (numba then refuses ``cache=True`` at decoration)."""
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(func)
    except RuntimeError:
        return numba.njit(cache=False, nogil=True, boundscheck=False)(func)


@_compiled
def prelu_pool(x: np.ndarray, weight: np.ndarray, outside_mask: np.ndarray, outside: float, kernel: int,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out`` (N, h, w, C) = max_pool2d(kernel, 2, ceil_mode=True) of PReLU(x) for x (N, H, W, C) float32.

    Where ``outside_mask`` (H, W; empty: none) is set, the PReLU's output is replaced by ``outside``
    before the pooling (P-Net's canvas)."""
    count, height, width, channels = x.shape
    masked = outside_mask.shape[0] > 0
    fill = np.float32(outside)
    slopes = np.empty(width * channels, np.float32)
    for k in range(width):
        slopes[k * channels:(k + 1) * channels] = weight
    rows = np.empty((kernel, width * channels), np.float32)
    for n in range(count):
        flat = x[n].reshape(height, width * channels)
        for i in range(out.shape[1]):
            window = min(kernel, height - 2 * i)
            for r in range(window):  # PReLU (and the mask) of the window's input rows, flat
                src, dst = flat[2 * i + r], rows[r]
                for k in range(width * channels):
                    value = src[k]
                    dst[k] = value if value > 0 else slopes[k] * value
                if masked:
                    for k in range(width):
                        if outside_mask[2 * i + r, k]:
                            dst[k * channels:(k + 1) * channels] = fill
            for j in range(out.shape[2]):
                last = min(2 * j + kernel, width)
                best = out[n, i, j]
                best[:] = rows[0, 2 * j * channels:(2 * j + 1) * channels]
                for r in range(window):
                    for k in range(2 * j, last):
                        for c in range(channels):  # channels innermost: contiguous, vectorisable
                            value = rows[r, k * channels + c]
                            if value > best[c] or value != value:  # max_pool2d's rule: NaN wins
                                best[c] = value


def pooled_size(size: int, kernel: int) -> int:
    """max_pool2d's output size at stride 2, no padding, ceil_mode=True."""
    out = -(-(size - kernel) // 2) + 1
    return out - 1 if (out - 1) * 2 >= size else out


@_compiled
def integral(image: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out`` (H+1, W+1, 3), int32 or int64: out[y, x] = the sum of image[:y, :x] per channel."""
    height, width, channels = image.shape
    out[0, :, :] = 0
    for y in range(height):
        out[y + 1, 0, :] = 0
        for c in range(channels):
            running = 0
            for x in range(width):
                running += image[y, x, c]
                out[y + 1, x + 1, c] = out[y, x + 1, c] + running


@_compiled
def area_crops(table: np.ndarray, bases: np.ndarray, strides: np.ndarray, top: np.ndarray, left: np.ndarray,
               heights: np.ndarray, widths: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out`` (K, h, w, 3) float32 (any strides): region k, rows top..top+heights, columns
    left..left+widths of its image (integral table rows ``bases[k]`` on, ``strides[k]`` a row, in the
    flat ``table`` (N, 3)), area-resampled to h x w and normalised as P-Net's input is. A pyramid
    level is the whole image as one region; R-Net's and O-Net's crops are 24 and 48 px squares."""
    out_h, out_w = out.shape[1], out.shape[2]
    for n in range(out.shape[0]):
        base, stride = bases[n], strides[n]
        for i in range(out_h):
            rs = top[n] + (i * heights[n]) // out_h
            re = top[n] + ((i + 1) * heights[n] + out_h - 1) // out_h
            kh = np.float32(re - rs)
            above, below = base + rs * stride, base + re * stride
            for j in range(out_w):
                cs = left[n] + (j * widths[n]) // out_w
                ce = left[n] + ((j + 1) * widths[n] + out_w - 1) // out_w
                kw = np.float32(ce - cs)
                for c in range(3):
                    total = (table[below + ce, c] - table[above + ce, c]
                             - table[below + cs, c] + table[above + cs, c])
                    value = np.float32(total) / kh
                    value = value / kw
                    out[n, i, j, c] = (value - np.float32(127.5)) * np.float32(0.0078125)


def warm() -> None:
    """Compile (or load from the cache) every kernel for the argument types FastMTCNN passes, so that a
    detector's first image is not the one that pays for it (about 4 s compiled, 0.4 s cached)."""
    image = np.zeros((4, 4, 3), np.uint8)
    frozen = image.copy()
    frozen.setflags(write=False)  # np.asarray of a PIL image is read-only
    one, four, five = np.zeros(1, np.int64), np.full(1, 4, np.int64), np.full(1, 5, np.int64)
    for dtype in (np.int32, np.int64):  # int64 for images of about 8.4 megapixels and more
        table = np.empty((25, 3), dtype)
        for source in (image, frozen):
            integral(source, table.reshape(5, 5, 3))
        area_crops(table, one, five, one, one, four, four, np.empty((1, 2, 2, 3), np.float32))
        canvas = np.empty((1, 3, 3, 3), np.float32)
        area_crops(table, one, five, one, one, four, four, canvas[:, :2, :2])  # a level in a canvas's view
    x, weight = np.zeros((1, 4, 4, 2), np.float32), np.ones(2, np.float32)
    for mask in (np.zeros((0, 0), np.bool_), np.zeros((4, 4), np.bool_)):
        prelu_pool(x, weight, mask, -1.0, 2, np.empty((1, 2, 2, 2), np.float32))
