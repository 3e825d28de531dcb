"""MTCNN with facenet-pytorch's own weights and outputs, computed in fewer, larger operations.

facenet-pytorch's ``detect_face`` spends most of its time outside arithmetic: it resamples the
whole image once per pyramid scale (``interpolate(mode="area")``, about ten calls on a
megapixel image), runs P-Net once per scale, cuts every R-Net and O-Net candidate out of the
image in a Python loop (one ``interpolate`` call each, hundreds per photo) and runs the nets
in NCHW, where PyTorch's max pooling and small convolutions are several times slower than in
channels-last. ``FastMTCNN`` computes the same thing another way:

* **The pyramid from window sums.** Area resampling averages whole-pixel windows; on 8-bit
  pixels the window sums are integers, so they are computed exactly from one cumulative sum
  of the image per axis (integers), and divided as PyTorch divides (``sum / kh / kw`` in
  float32). The levels are bit for bit those of ``interpolate(mode="area")``.
* **All levels (of all images in a call) in one canvas**, one P-Net pass. The levels are
  packed on shelves at even offsets, so P-Net's stride-2 pooling grid falls on each level as
  it would alone. Where a first-layer output would read across a level's edge it is set to a
  large negative number before the pooling, as ``ceil_mode`` pooling ignores what is outside
  an image; every output read back lies wholly inside its level, so it is the output that
  level would give alone (the convolutions may sum in another order: float rounding only).
* **The candidate crops from an integral image**: every R-Net (24 px) and O-Net (48 px)
  crop of every candidate at once, as gathers of the integral image; again exact area
  averages. R-Net and O-Net run once over all candidates of all images, channels-last.
* The rest (box generation, the NMS calls and their order, ``rerec``, ``pad``, box
  regression, the final "Min" NMS) is facenet-pytorch's own code or the same formulas on the
  same ordered inputs, so ties are broken the same way.

On the CPU the resampling (pyramid levels, crops, the integral image) and the first layers' PReLU
and pooling run as compiled loops (``models/mtcnn_kernels.py``, numba): the same float32
operations in one pass over memory, bit for bit the PyTorch path's output, which the CUDA path
(and ``kernels=False``) keeps.

Images of different sizes can share one call (facenet-pytorch refuses them). On CUDA the nets
run in full float32, not the TF32 that PyTorch lets cuDNN's convolutions use by default, or in
float16 (``half=True``, not parity); the box arithmetic stays float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mimamori.models.devices import full_float32

# Set on first-layer outputs that read outside their pyramid level, so that max pooling
# ignores them as ``ceil_mode`` ignores what lies outside an image. Finite (and within float16)
# so the positions it reaches stay finite; none of them is read back.
_OUTSIDE = -30000.0
_CACHE_LAYOUTS = 64
INT32_SUMS = 2**31  # integral tables whose sums reach this are int64


def wide_sums(height: int, width: int) -> bool:
    """Whether an (H, W) 8-bit image's running sums need int64 (int32 would overflow)."""
    return 255 * (height + 1) * (width + 1) >= INT32_SUMS


def facenet_weights(name: str) -> Path:
    """``pnet``, ``rnet`` or ``onet``: the state dict inside the installed facenet-pytorch wheel."""
    import facenet_pytorch

    path = Path(facenet_pytorch.__file__).resolve().parent / "data" / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: facenet-pytorch is installed without its MTCNN weights")
    return path


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """facenet-pytorch's scales, with its float arithmetic."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scale, scales = m, []
    while minl >= 12:
        scales.append(scale)
        scale = scale * factor
        minl = minl * factor
    return scales


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return int(height * scale + 1), int(width * scale + 1)


@dataclass(frozen=True)
class Level:
    image: int
    index: int  # position in the image's pyramid
    scale: float
    height: int
    width: int
    top: int  # offsets in the canvas, both even
    left: int

    @property
    def out_height(self) -> int:  # P-Net's output rows for this level
        return (self.height - 1) // 2 - 4

    @property
    def out_width(self) -> int:
        return (self.width - 1) // 2 - 4


def pack_levels(sizes: list[tuple[int, int, int, int, float]]) -> tuple[list[Level], int, int]:
    """Shelf packing of (image, index, height, width, scale) rectangles at even offsets.

    Tries a few canvas widths and keeps the smallest canvas. Returns levels, canvas height, width.
    """
    even = [(*s[:2], s[2], s[3], s[4], s[2] + (s[2] & 1), s[3] + (s[3] & 1)) for s in sizes]
    order = sorted(range(len(even)), key=lambda i: (-even[i][5], -even[i][6], i))
    widest = max(e[6] for e in even)
    area = sum(e[5] * e[6] for e in even)
    best = None
    for width in sorted({widest, *(max(widest, int(math.sqrt(area) * f) + 1 & ~1) for f in (0.8, 1.0, 1.2, 1.5))}):
        shelves: list[list[int]] = []  # [top, height, used width]
        placed: dict[int, tuple[int, int]] = {}
        for i in order:
            h, w = even[i][5], even[i][6]
            for shelf in shelves:
                if shelf[1] >= h and shelf[2] + w <= width:
                    placed[i] = (shelf[0], shelf[2])
                    shelf[2] += w
                    break
            else:
                top = shelves[-1][0] + shelves[-1][1] if shelves else 0
                shelves.append([top, h, w])
                placed[i] = (top, 0)
        height = shelves[-1][0] + shelves[-1][1]
        if best is None or height * width < best[1] * best[2]:
            best = (placed, height, width)
    placed, height, width = best
    levels = [Level(e[0], e[1], e[4], e[2], e[3], *placed[i]) for i, e in enumerate(even)]
    return levels, height, width


def prelu_pool(kernels, x: torch.Tensor, prelu: torch.nn.PReLU, pool: torch.nn.MaxPool2d,
               outside: torch.Tensor | None = None) -> torch.Tensor:
    """``pool(prelu(x))``, with the canvas's mask between them: in one pass of the CPU's kernel where
    ``kernels`` is given and ``x`` is float32 with channels-last strides, else PyTorch's operations."""
    n, c, h, w = x.shape
    if (kernels is None or x.dtype != torch.float32 or x.requires_grad or prelu.weight.numel() != c
            or not x.is_contiguous(memory_format=torch.channels_last) or not _fusable(pool)
            or (outside is not None and tuple(outside.shape[-2:]) != (h, w))):
        x = prelu(x)
        return pool(x if outside is None else x.masked_fill(outside, _OUTSIDE))
    size = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    out = torch.empty((n, kernels.pooled_size(h, size), kernels.pooled_size(w, size), c), dtype=torch.float32)
    mask = outside[0, 0].numpy() if outside is not None else np.zeros((0, 0), np.bool_)
    kernels.prelu_pool(x.permute(0, 2, 3, 1).numpy(), prelu.weight.detach().numpy(), mask, _OUTSIDE, size,
                       out.numpy())
    return out.permute(0, 3, 1, 2)


def _fusable(pool: torch.nn.MaxPool2d) -> bool:
    """The pooling the kernel computes: square, stride 2, no padding or dilation, ceil_mode."""
    def one(value) -> int | None:
        return value if isinstance(value, int) else (value[0] if len(set(value)) == 1 else None)

    return (pool.ceil_mode and one(pool.stride) == 2 and one(pool.padding) == 0 and one(pool.dilation) == 1
            and one(pool.kernel_size) is not None)


class _PReLUPool(torch.nn.Module):
    """Stands in for R-Net's and O-Net's first pooling (their first PReLU becomes the identity), so that
    facenet-pytorch's own ``forward`` runs with the fused kernel."""

    def __init__(self, prelu: torch.nn.PReLU, pool: torch.nn.MaxPool2d):
        super().__init__()
        self.prelu, self.pool = prelu, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mimamori.models import mtcnn_kernels

        return prelu_pool(mtcnn_kernels, x, self.prelu, self.pool)


@dataclass
class IntegralTables:
    """The CPU path's integral images of one call's images, in one flat (sum of (H+1)(W+1), 3) table:
    what every pyramid level and every R-Net and O-Net crop is resampled from."""

    kernels: object
    table: np.ndarray
    bases: list[int]  # each image's first row in ``table``
    rows: list[int]  # each image's row length, W + 1
    shapes: list[tuple[int, int]]

    @classmethod
    def of(cls, kernels, arrays: list[np.ndarray]) -> IntegralTables:
        wide = any(wide_sums(*a.shape[:2]) for a in arrays)
        sizes = [(a.shape[0] + 1) * (a.shape[1] + 1) for a in arrays]
        table = np.empty((sum(sizes), 3), np.int64 if wide else np.int32)
        bases = [sum(sizes[:i]) for i in range(len(sizes))]
        for a, base, n in zip(arrays, bases, sizes, strict=True):
            kernels.integral(np.ascontiguousarray(a), table[base:base + n].reshape(a.shape[0] + 1, a.shape[1] + 1, 3))
        return cls(kernels, table, bases, [a.shape[1] + 1 for a in arrays], [a.shape[:2] for a in arrays])

    def resample(self, image: int, out: np.ndarray) -> None:
        """Image ``image``, area-resampled to ``out``'s (h, w) and normalised, written into ``out``."""
        height, width = self.shapes[image]
        one = np.array([0], np.int64)
        self.kernels.area_crops(self.table, np.array([self.bases[image]], np.int64),
                                np.array([self.rows[image]], np.int64), one, one,
                                np.array([height], np.int64), np.array([width], np.int64), out[None])


def _as_uint8_hwc(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError("images must be RGB: PIL images or uint8 arrays of shape (H, W, 3)")
    return array


class FastMTCNN:
    """``detect(images)`` gives facenet_pytorch.MTCNN(keep_all=True).detect's boxes, probabilities, landmarks."""

    def __init__(self, device: torch.device | str = "cpu", min_face_size: float = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 half: bool = False, crop_batch: int = 256, pack_pixels: int | None = None,
                 kernels: bool = True):
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device = torch.device(device)
        self.min_face_size, self.factor = min_face_size, factor
        self.thresholds = tuple(float(t) for t in thresholds)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.crop_batch = crop_batch
        # Levels up to this many pixels share P-Net passes on a canvas. On a CPU large tensors
        # gain nothing from sharing (PyTorch's CPU convolutions were slower on one very large
        # canvas than level by level) while small levels lose most of their time to per-call
        # costs; on a GPU one canvas for everything.
        if pack_pixels is None:
            pack_pixels = 1 << 40 if self.device.type == "cuda" else 60_000
        self.pack_pixels = pack_pixels
        nets = []
        for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
            net = cls(pretrained=False)
            net.load_state_dict(torch.load(facenet_weights(name), map_location="cpu", weights_only=True))
            nets.append(net.eval().to(self.device, self.dtype).to(memory_format=torch.channels_last))
        self.pnet, self.rnet, self.onet = nets
        p = self.pnet  # P-Net's two 1x1 heads as one convolution: box regression (4), then face (2)
        self._p_head_w = torch.cat([p.conv4_2.weight, p.conv4_1.weight]).flatten(1).t().contiguous()
        self._p_head_b = torch.cat([p.conv4_2.bias, p.conv4_1.bias])
        # The compiled loops (models/mtcnn_kernels.py) on the CPU in float32; PyTorch's operations elsewhere.
        self._kernels = None
        if self.device.type == "cpu" and self.dtype == torch.float32 and kernels:
            from mimamori.models import mtcnn_kernels

            self._kernels = mtcnn_kernels
            mtcnn_kernels.warm()
            for net in (self.rnet, self.onet):
                net.pool1 = _PReLUPool(net.prelu1, net.pool1)
                net.prelu1 = torch.nn.Identity()
        self._layouts: dict[tuple, tuple] = {}
        self.last_counts: dict[str, int] = {}

    # ---- stage 1: pyramid, canvas, P-Net -------------------------------------------------

    def _layout(self, shapes: tuple[tuple[int, int], ...]) -> list[tuple[list[Level], int, int, torch.Tensor | None]]:
        """P-Net's passes for images of these sizes: (levels, canvas height, width, outside mask).

        A level larger than ``pack_pixels`` is a pass of its own (no canvas, no mask); the others
        are packed into canvases of up to ``pack_pixels`` each (on CUDA: one canvas for all)."""
        if shapes in self._layouts:
            return self._layouts[shapes]
        sizes = []
        for b, (h, w) in enumerate(shapes):
            for k, scale in enumerate(pyramid_scales(h, w, self.min_face_size, self.factor)):
                sizes.append((b, k, *level_size(h, w, scale), scale))
        passes, group, area = [], [], 0
        for size in sorted(sizes, key=lambda s: -s[2] * s[3]):
            pixels = size[2] * size[3]
            if pixels > self.pack_pixels:
                b, k, h, w, scale = size
                passes.append(([Level(b, k, scale, h, w, 0, 0)], h, w, None))
                continue
            if group and area + pixels > self.pack_pixels:
                passes.append(self._packed(group))
                group, area = [], 0
            group.append(size)
            area += pixels
        if group:
            passes.append(self._packed(group))
        if len(self._layouts) >= _CACHE_LAYOUTS:
            self._layouts.pop(next(iter(self._layouts)))
        self._layouts[shapes] = passes
        return passes

    def _packed(self, sizes) -> tuple[list[Level], int, int, torch.Tensor | None]:
        if len(sizes) == 1:
            b, k, h, w, scale = sizes[0]
            return [Level(b, k, scale, h, w, 0, 0)], h, w, None
        levels, height, width = pack_levels(sizes)
        inside = torch.zeros((1, 1, height - 2, width - 2), dtype=torch.bool)
        for lv in levels:
            inside[..., lv.top:lv.top + lv.height - 2, lv.left:lv.left + lv.width - 2] = True
        outside = (~inside).to(self.device).contiguous(memory_format=torch.channels_last)
        return levels, height, width, outside

    @staticmethod
    def _window_bounds(size_in: int, size_out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(size_out, device=device)
        return (i * size_in) // size_out, ((i + 1) * size_in + size_out - 1) // size_out

    def _cumsum_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Running sums of ``rows`` down dim 0, with a row of zeros first.

        On the CPU a loop of in-place row additions: PyTorch's cumsum along the outermost
        dimension is several times slower than that (along an inner one it is fast)."""
        out = torch.empty((rows.shape[0] + 1, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        out[0] = 0
        if rows.device.type != "cpu":
            torch.cumsum(rows, 0, out=out[1:])
            return out
        out[1:] = rows
        for i in range(2, len(out)):
            out[i].add_(out[i - 1])
        return out

    def _sources(self, arrays: list[np.ndarray]) -> list | IntegralTables:
        """What the pyramid and the crops are cut from: for the CPU's kernels one integral table of all
        the images, else each image's running sums along x on the device."""
        if self._kernels:
            return IntegralTables.of(self._kernels, arrays)
        return [self._prepare(torch.from_numpy(a if a.flags.writeable else a.copy()).to(self.device)) for a in arrays]

    @staticmethod
    def _prepare(image: torch.Tensor) -> torch.Tensor:
        """(H, W+1, 3) running sums along x of an (H, W, 3) uint8 image (integers, exact)."""
        height, width = image.shape[:2]
        acc = torch.int64 if wide_sums(height, width) else torch.int32
        return F.pad(torch.cumsum(image, 1, dtype=acc), (0, 0, 1, 0))

    def _level(self, columns: torch.Tensor, height: int, width: int, lv: Level) -> torch.Tensor:
        """One pyramid level as (h, w, 3) float32, normalised: interpolate(mode="area"), bit for bit."""
        y0, y1 = self._window_bounds(height, lv.height, self.device)
        x0, x1 = self._window_bounds(width, lv.width, self.device)
        sx = (columns.index_select(1, x1) - columns.index_select(1, x0)).view(height, lv.width * 3)
        kh = y1 - y0  # window sums along x done; now along y
        kmax = int(kh.max())
        if kmax > 4:  # small levels: running sums (cheap on a small tensor)
            cy = torch.cumsum(sx, 0, dtype=sx.dtype)
            cy = torch.cat([torch.zeros_like(cy[:1]), cy])
            sums = cy.index_select(0, y1) - cy.index_select(0, y0)
        else:  # large levels: windows of 1 to 4 rows, one row offset at a time
            sums = sx.index_select(0, y0)
            for d in range(1, kmax):
                rows = sx.index_select(0, (y0 + d).clamp(max=height - 1))
                sums.add_(rows.mul_((kh > d).to(rows.dtype)[:, None]))
        # sum / kh / kw in float32, as PyTorch's adaptive_avg_pool2d divides, then normalised
        kw = (x1 - x0).to(torch.float32).repeat_interleave(3)
        level = sums.to(torch.float32).div_(kh.to(torch.float32)[:, None]).div_(kw[None, :])
        return level.sub_(127.5).mul_(0.0078125).view(lv.height, lv.width, 3)

    def _canvas(self, columns, shapes, levels: list[Level], height: int, width: int) -> torch.Tensor:
        canvas = torch.zeros((1, height, width, 3), dtype=self.dtype, device=self.device)  # gaps: never read
        for lv in levels:
            place = canvas[0, lv.top:lv.top + lv.height, lv.left:lv.left + lv.width]
            if self._kernels:
                columns.resample(lv.image, place.numpy())
            else:
                place.copy_(self._level(columns[lv.image], *shapes[lv.image], lv))
        return canvas.permute(0, 3, 1, 2)  # NCHW with channels-last strides

    def _one_level(self, columns, shapes, lv: Level) -> torch.Tensor:
        """A level P-Net runs on alone, (1, 3, h, w) with channels-last strides."""
        if self._kernels:
            level = torch.empty((lv.height, lv.width, 3), dtype=torch.float32)
            columns.resample(lv.image, level.numpy())
        else:
            level = self._level(columns[lv.image], *shapes[lv.image], lv).to(self.dtype)
        return level.permute(2, 0, 1).unsqueeze(0)

    def _pnet(self, canvas: torch.Tensor, outside: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pnet
        x = prelu_pool(self._kernels, p.conv1(canvas), p.prelu1, p.pool1, outside)
        x = p.prelu2(p.conv2(x))
        x = p.prelu3(p.conv3(x))
        _, c, h, w = x.shape  # the two 1x1 heads as one matrix product on (h*w, 32) pixels
        y = torch.addmm(self._p_head_b, x.permute(0, 2, 3, 1).reshape(-1, c), self._p_head_w).float()
        y = y.view(h, w, 6)
        # softmax over (not face, face), its second half: sigmoid of the difference (within 1e-7)
        return y[..., :4], torch.sigmoid(y[..., 5] - y[..., 4])

    # ---- stages 2 and 3: candidate crops -------------------------------------------------

    def _integrals(self, columns) -> tuple[torch.Tensor, list[int], list[int]]:
        """One flat (sum of (H+1)(W+1), 3) integral table of all images, with each image's base and row length."""
        if self._kernels:
            return torch.from_numpy(columns.table), columns.bases, columns.rows
        tables, bases, rows, base = [], [], [], 0
        for cols in columns:
            table = self._cumsum_rows(cols)  # (H+1, W+1, 3)
            tables.append(table.reshape(-1, 3))
            bases.append(base)
            rows.append(table.shape[1])
            base += table.shape[0] * table.shape[1]
        return (tables[0] if len(tables) == 1 else torch.cat(tables)), bases, rows

    def _crops_cpu(self, integral, bases, rows, image_inds, y, ey, x, ex, size: int) -> torch.Tensor:
        """``_crops`` by the CPU's kernel, which reads the table unchecked: every region must lie in its image."""
        top, left = np.asarray(y, np.int64) - 1, np.asarray(x, np.int64) - 1
        height, width = np.asarray(ey, np.int64) - top, np.asarray(ex, np.int64) - left
        row_length = np.asarray(rows, np.int64)[image_inds]
        image_rows = (np.diff([*bases, len(integral)]) // np.asarray(rows))[image_inds]  # H + 1 of each image
        if ((top < 0) | (left < 0) | (height < 1) | (width < 1) | (top + height >= image_rows)
                | (left + width >= row_length)).any():
            raise ValueError("a candidate crop lies outside its image")
        out = torch.empty((len(top), size, size, 3), dtype=torch.float32)
        self._kernels.area_crops(integral.numpy(), np.asarray(bases, np.int64)[image_inds], row_length, top, left,
                                 height, width, out.numpy())
        return out.permute(0, 3, 1, 2)

    def _crops(self, integral, bases, rows, image_inds, y, ey, x, ex, size: int) -> torch.Tensor:
        """Area-resampled ``size`` x ``size`` crops of rows y-1..ey-1, columns x-1..ex-1 (facenet's slices)."""
        if self._kernels:
            return self._crops_cpu(integral, bases, rows, image_inds, y, ey, x, ex, size)
        dev = self.device
        y0, x0 = torch.as_tensor(y - 1, device=dev), torch.as_tensor(x - 1, device=dev)
        hb = torch.as_tensor(ey, device=dev) - y0
        wb = torch.as_tensor(ex, device=dev) - x0
        i = torch.arange(size, device=dev)
        rs = y0[:, None] + (i * hb[:, None]) // size
        re = y0[:, None] + ((i + 1) * hb[:, None] + size - 1) // size
        cs = x0[:, None] + (i * wb[:, None]) // size
        ce = x0[:, None] + ((i + 1) * wb[:, None] + size - 1) // size
        base = torch.as_tensor([bases[b] for b in image_inds], device=dev)[:, None, None]
        stride = torch.as_tensor([rows[b] for b in image_inds], device=dev)[:, None, None]

        def at(r, c):
            return integral[base + r[:, :, None] * stride + c[:, None, :]]

        sums = (at(re, ce) - at(rs, ce) - at(re, cs) + at(rs, cs)).to(torch.float32)  # (K, size, size, 3)
        kh = (re - rs).to(torch.float32)[:, :, None, None]
        kw = (ce - cs).to(torch.float32)[:, None, :, None]
        crops = (sums / kh / kw - 127.5) * 0.0078125
        return crops.permute(0, 3, 1, 2).to(self.dtype)  # channels-last strides

    def _batched(self, net, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [net(crops[i:i + self.crop_batch]) for i in range(0, len(crops), self.crop_batch)]
        return tuple(torch.cat(v).float() for v in zip(*outs, strict=True))

    @staticmethod
    def _pad(boxes: torch.Tensor, widths: np.ndarray, heights: np.ndarray):
        """facenet-pytorch's ``pad`` with each box's own image size."""
        b = boxes.trunc().int().cpu().numpy()
        x, y, ex, ey = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        x[x < 1] = 1
        y[y < 1] = 1
        ex[:] = np.minimum(ex, widths)
        ey[:] = np.minimum(ey, heights)
        return y, ey, x, ex

    # ---- the whole detector --------------------------------------------------------------

    def detect(self, images) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each image: boxes (N, 4), probabilities (N,), landmarks (N, 5, 2), best first."""
        with full_float32(self.device):
            return self._detect(images)

    @torch.inference_mode()
    def _detect(self, images) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        arrays = [_as_uint8_hwc(image) for image in images]
        empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
        if not arrays:
            return []
        shapes = tuple((a.shape[0], a.shape[1]) for a in arrays)
        columns = self._sources(arrays)
        sizes = (np.array([s[1] for s in shapes]), np.array([s[0] for s in shapes]))  # widths, heights
        passes = self._layout(shapes)
        self.last_counts = counts = {"images": len(arrays), "pnet_passes": len(passes),
                                     "pnet_pixels": sum(height * width for _, height, width, _ in passes)}
        if not passes:
            return [empty for _ in arrays]
        boxes, image_inds = self._stage_one(columns, shapes, passes)
        counts["pnet_boxes"] = len(boxes)
        crops = None
        if len(boxes) > 0:
            crops = self._integrals(columns)
            boxes, image_inds = self._nonempty(boxes, image_inds, *sizes)
        counts["rnet_crops"] = len(boxes)
        if len(boxes) > 0:
            boxes, image_inds = self._stage_two(crops, sizes, boxes, image_inds)
        points = torch.zeros(0, 5, 2, device=self.device)
        counts["onet_crops"] = len(boxes)
        if len(boxes) > 0:
            boxes, image_inds, points = self._stage_three(crops, sizes, boxes, image_inds)
        boxes, points, image_inds = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
        results = []
        for b in range(len(arrays)):
            mine = np.where(image_inds == b)[0]
            if len(mine) == 0:
                results.append(empty)
            else:
                results.append((boxes[mine, :4].copy(), boxes[mine, 4].copy(), points[mine].copy()))
        return results

    def onet_landmarks(self, images, boxes: list[np.ndarray]) -> list[np.ndarray]:
        """O-Net's five landmarks (K x 5 x 2) for each of the K boxes another detector found in each image.

        The boxes are squared as MTCNN squares R-Net's before O-Net, which places the landmarks
        in them; no threshold and no NMS here (the caller's detector already made those
        choices), one row out for each box in, in order; NaN for a box wholly outside its image.
        """
        with full_float32(self.device):
            return self._onet_landmarks(images, boxes)

    @torch.inference_mode()
    def _onet_landmarks(self, images, boxes: list[np.ndarray]) -> list[np.ndarray]:
        from facenet_pytorch.models.utils.detect_face import rerec

        arrays = [_as_uint8_hwc(image) for image in images]
        if not any(len(b) for b in boxes):
            return [np.zeros((0, 5, 2), np.float32) for _ in arrays]
        columns = self._sources(arrays)
        widths = np.array([a.shape[1] for a in arrays])
        heights = np.array([a.shape[0] for a in arrays])
        rows = torch.as_tensor(np.concatenate([np.asarray(b, np.float32)[:, :4] for b in boxes if len(b)]),
                               device=self.device)
        inds = np.concatenate([np.full(len(b), i) for i, b in enumerate(boxes)])
        squared = rerec(torch.cat((rows, torch.ones(len(rows), 1, device=self.device)), dim=1))
        y, ey, x, ex = self._pad(squared, widths[inds], heights[inds])
        points = np.full((len(inds), 5, 2), np.nan, np.float32)  # a box wholly outside its image: no crop
        inside = self._has_pixels(y, ey, x, ex)
        if inside.any():
            k = inside.nonzero()[0]
            crops = self._crops(*self._integrals(columns), inds[k], y[k], ey[k], x[k], ex[k], 48)
            out = self._batched(self.onet, crops)
            keep = torch.as_tensor(k, device=self.device)
            points[k] = self._landmarks(squared[keep], out[1].permute(1, 0)).cpu().numpy()
        return [points[inds == i].copy() for i in range(len(arrays))]

    def _pnet_outputs(self, columns, shapes, passes) -> dict[Level, tuple[torch.Tensor, torch.Tensor]]:
        """P-Net's face probability (h, w) and box regression (h, w, 4) for every level."""
        outputs = {}
        for group, height, width, outside in passes:
            if outside is None:
                lv = group[0]
                reg, probs = self._pnet(self._one_level(columns, shapes, lv), None)
                outputs[lv] = (probs, reg)
                continue
            reg, probs = self._pnet(self._canvas(columns, shapes, group, height, width), outside)
            for lv in group:
                top, left = lv.top // 2, lv.left // 2
                outputs[lv] = (probs[top:top + lv.out_height, left:left + lv.out_width],
                               reg[top:top + lv.out_height, left:left + lv.out_width])
        return outputs

    def _stage_one(self, columns, shapes, passes) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net's candidates after facenet-pytorch's NMS calls, in its order: scale by scale,
        each scale's images in order (so that ties fall the same way)."""
        from facenet_pytorch.models.utils.detect_face import rerec
        from torchvision.ops.boxes import batched_nms

        outputs = self._pnet_outputs(columns, shapes, passes)
        by_scale: dict[int, list[Level]] = {}
        for lv in sorted(outputs, key=lambda lv: (lv.index, lv.image)):
            by_scale.setdefault(lv.index, []).append(lv)
        all_boxes, all_inds = [], []
        for group in by_scale.values():
            boxes_s, inds_s = [], []
            for lv in group:
                p, r = outputs[lv]
                mask = p >= self.thresholds[0]
                yx = mask.nonzero()
                bb = yx.to(r.dtype).flip(1)
                q1 = ((2 * bb + 1) / lv.scale).floor()
                q2 = ((2 * bb + 12 - 1 + 1) / lv.scale).floor()
                boxes_s.append(torch.cat([q1, q2, p[mask].unsqueeze(1), r[mask]], dim=1))
                inds_s.append(torch.full((len(yx),), lv.image, dtype=torch.long, device=self.device))
            boxes_s, inds_s = torch.cat(boxes_s), torch.cat(inds_s)
            pick = batched_nms(boxes_s[:, :4], boxes_s[:, 4], inds_s, 0.5)
            all_boxes.append(boxes_s[pick])
            all_inds.append(inds_s[pick])
        boxes, image_inds = torch.cat(all_boxes), torch.cat(all_inds)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        qq1 = boxes[:, 0] + boxes[:, 5] * regw
        qq2 = boxes[:, 1] + boxes[:, 6] * regh
        qq3 = boxes[:, 2] + boxes[:, 7] * regw
        qq4 = boxes[:, 3] + boxes[:, 8] * regh
        return rerec(torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)), image_inds

    def _stage_two(self, crops, sizes, boxes, image_inds) -> tuple[torch.Tensor, torch.Tensor]:
        """R-Net on every candidate of every image at once."""
        from facenet_pytorch.models.utils.detect_face import bbreg, rerec
        from torchvision.ops.boxes import batched_nms

        inds = image_inds.cpu().numpy()
        y, ey, x, ex = self._pad(boxes, sizes[0][inds], sizes[1][inds])
        out = self._batched(self.rnet, self._crops(*crops, inds, y, ey, x, ex, 24))
        score = out[1][:, 1]
        ipass = score > self.thresholds[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out[0][ipass]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = rerec(bbreg(boxes, mv))
        return self._nonempty(boxes, image_inds, *sizes)

    def _stage_three(self, crops, sizes, boxes, image_inds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-Net, the landmarks, the final "Min" NMS."""
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

        inds = image_inds.cpu().numpy()
        y, ey, x, ex = self._pad(boxes, sizes[0][inds], sizes[1][inds])
        out = self._batched(self.onet, self._crops(*crops, inds, y, ey, x, ex, 48))
        score = out[2][:, 1]
        ipass = score > self.thresholds[2]
        points = out[1].permute(1, 0)[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out[0][ipass]
        points = self._landmarks(boxes, points)
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        return boxes[pick], image_inds[pick], points[pick]

    @staticmethod
    def _landmarks(boxes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """O-Net's landmarks (10 x K, fractions of each box) in image pixels, K x 5 x 2 (facenet's arithmetic)."""
        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        return torch.stack((points_x, points_y)).permute(2, 1, 0)

    @staticmethod
    def _has_pixels(y: np.ndarray, ey: np.ndarray, x: np.ndarray, ex: np.ndarray) -> np.ndarray:
        """Which of ``_pad``'s slices (rows y-1..ey-1, columns x-1..ex-1) hold at least one pixel."""
        return (ey > y - 1) & (ex > x - 1)

    def _nonempty(self, boxes, image_inds, widths, heights):
        """Candidates whose crop has pixels (facenet-pytorch skips the others' crops but not their boxes,
        which misaligns its scores; such boxes lie wholly outside the image and are dropped here)."""
        inds = image_inds.cpu().numpy()
        y, ey, x, ex = self._pad(boxes, widths[inds], heights[inds])
        keep = self._has_pixels(y, ey, x, ex)
        if keep.all():
            return boxes, image_inds
        keep_t = torch.as_tensor(keep, device=boxes.device)
        return boxes[keep_t], image_inds[keep_t]
