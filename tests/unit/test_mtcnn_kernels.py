"""The compiled loops of models/mtcnn_kernels.py give, bit for bit, what the PyTorch operations they
replace give: the pyramid's area resampling, P-Net's first PReLU, mask and pooling, the candidate
crops, and so FastMTCNN's whole output with and without them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mimamori.models import mtcnn_kernels
from mimamori.models.fast_mtcnn import FastMTCNN, IntegralTables, level_size, prelu_pool, pyramid_scales

RNG = np.random.default_rng(21)


def normalised_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """What facenet-pytorch feeds P-Net: interpolate(mode="area") of the float image, then normalised."""
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float()
    y = (F.interpolate(x, size=(height, width), mode="area") - 127.5) * 0.0078125
    return y[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("height", "width"), [(250, 250), (431, 640), (97, 1280), (13, 17)])
def test_pyramid_levels_are_interpolate_area_bit_for_bit(height, width):
    image = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    other = RNG.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    tables = IntegralTables.of(mtcnn_kernels, [other, image])  # the second image of a table: its base counts
    sizes = [level_size(height, width, s) for s in pyramid_scales(height, width, 20, 0.709)]
    sizes += [(height * 2 - 1, width + 3)]  # upsampling too (a min_face_size under 12)
    for out_h, out_w in sizes:
        out = np.full((out_h, out_w, 3), np.nan, np.float32)
        tables.resample(1, out)
        np.testing.assert_array_equal(out, normalised_area(image, out_h, out_w))


def test_a_level_is_written_into_a_strided_view():
    image = RNG.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    canvas = np.zeros((100, 100, 3), np.float32)
    IntegralTables.of(mtcnn_kernels, [image]).resample(0, canvas[10:70, 20:65])
    np.testing.assert_array_equal(canvas[10:70, 20:65], normalised_area(image, 60, 45))
    assert not canvas[:10].any() and not canvas[70:].any() and not canvas[:, :20].any() and not canvas[:, 65:].any()


@pytest.mark.parametrize(("count", "channels", "height", "width", "kernel", "masked"), [
    (1, 10, 8, 8, 2, False), (1, 10, 7, 9, 2, False), (1, 10, 31, 20, 2, True), (1, 10, 1, 5, 2, True),
    (5, 28, 22, 22, 3, False), (3, 32, 46, 46, 3, False), (2, 4, 9, 6, 3, False)])
def test_prelu_pool_is_prelu_mask_then_ceil_mode_pooling(count, channels, height, width, kernel, masked):
    x = torch.from_numpy(RNG.normal(0, 1, (count, channels, height, width)).astype(np.float32))
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.from_numpy(RNG.normal(0, 0.8, channels).astype(np.float32))  # negative slopes too
    mask = torch.from_numpy(RNG.random((1, 1, height, width)) < 0.3) if masked else None
    expected = F.prelu(x, weight)
    if mask is not None:
        expected = expected.masked_fill(mask, -30000.0)
    expected = F.max_pool2d(expected, kernel, 2, ceil_mode=True)
    prelu = torch.nn.PReLU(channels)
    prelu.weight.data = weight
    got = prelu_pool(mtcnn_kernels, x, prelu, torch.nn.MaxPool2d(kernel, 2, ceil_mode=True), mask)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_crops_from_the_integral_image_are_the_pytorch_paths():
    images = [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((200, 150), (64, 300))]
    compiled, plain = FastMTCNN(), FastMTCNN(kernels=False)
    assert compiled._kernels is not None and plain._kernels is None
    inds = np.array([0, 1, 0, 1, 0, 1])
    y = np.array([1, 1, 50, 10, 199, 64], np.int32)  # facenet's 1-based slices: rows y-1..ey-1
    ey = np.array([200, 64, 51, 40, 200, 64], np.int32)  # the last: one row
    x = np.array([1, 1, 3, 200, 1, 300], np.int32)
    ex = np.array([150, 300, 148, 300, 2, 300], np.int32)  # and one column
    for size in (24, 48):
        got = compiled._crops(*compiled._integrals(compiled._sources(images)), inds, y, ey, x, ex, size)
        want = plain._crops(*plain._integrals(plain._sources(images)), inds, y, ey, x, ex, size)
        assert got.shape == want.shape == (6, 3, size, size)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(("y", "ey", "x", "ex"), [(70, 80, 1, 10), (1, 10, 1, 61), (5, 4, 1, 10), (0, 10, 1, 10)])
def test_a_crop_outside_its_image_is_refused_not_read(y, ey, x, ex):
    """The kernel reads the integral table unchecked: a region past the image's rows or columns, empty,
    or before its first pixel is an error before it is read."""
    detector = FastMTCNN()
    tables = detector._integrals(detector._sources([RNG.integers(0, 256, (64, 60, 3), dtype=np.uint8)]))
    with pytest.raises(ValueError, match="outside its image"):
        detector._crops(*tables, np.array([0]), np.array([y]), np.array([ey]), np.array([x]), np.array([ex]), 24)


def test_o_net_landmarks_of_boxes_outside_the_image_are_nan(testdata):
    photo = Image.open(testdata / "faces" / "paul_rudd.jpg").convert("RGB")
    photo = photo.resize((photo.width // 2, photo.height // 2))
    compiled, plain = FastMTCNN(), FastMTCNN(kernels=False)
    face = compiled.detect([photo])[0][0][:1]
    outside = np.array([[photo.width + 50, 10, photo.width + 90, 50], [10, photo.height + 500, 60, photo.height + 560],
                        [-90, 10, -40, 60]], np.float32)
    points = compiled.onet_landmarks([photo], [np.concatenate([face, outside])])[0]
    assert points.shape == (4, 5, 2) and np.isnan(points[1:]).all()
    np.testing.assert_array_equal(points[0], plain.onet_landmarks([photo], [face])[0][0])


def test_the_int64_table_gives_the_same_levels(monkeypatch):
    """Images of about 8.4 megapixels and more need int64 sums; forced here on a small image."""
    from mimamori.models import fast_mtcnn

    image = RNG.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    monkeypatch.setattr(fast_mtcnn, "INT32_SUMS", 1000)
    tables = IntegralTables.of(mtcnn_kernels, [image])
    assert tables.table.dtype == np.int64
    out = np.empty((33, 21, 3), np.float32)
    tables.resample(0, out)
    np.testing.assert_array_equal(out, normalised_area(image, 33, 21))


def test_a_read_only_image_needs_no_new_compilation():
    """``warm`` compiled every signature FastMTCNN uses, np.asarray(PIL image)'s read-only array's too."""
    detector = FastMTCNN()
    kernels = (mtcnn_kernels.integral, mtcnn_kernels.area_crops, mtcnn_kernels.prelu_pool)
    before = [len(k.signatures) for k in kernels]
    image = np.asarray(Image.fromarray(RNG.integers(0, 256, (160, 120, 3), dtype=np.uint8)))
    assert not image.flags.writeable
    detector.detect([image])
    assert [len(k.signatures) for k in kernels] == before


def test_fast_mtcnn_gives_the_same_bits_with_and_without_the_kernels(testdata):
    photos = [Image.open(testdata / "faces" / f"{name}.jpg").convert("RGB") for name in ("multiface", "paul_rudd")]
    photos = [p.resize((p.width // 2, p.height // 2)) for p in photos]
    photos.append(Image.open(sorted((testdata / "lfw").glob("*/*.jpg"))[0]).convert("RGB"))
    compiled, plain = FastMTCNN(), FastMTCNN(kernels=False)
    for batch in ([p] for p in photos):
        got_image, want_image = compiled.detect(batch)[0], plain.detect(batch)[0]
        assert len(got_image[0]) > 0
        for got, want in zip(got_image, want_image, strict=True):
            np.testing.assert_array_equal(got, want)
    together = compiled.detect(photos), plain.detect(photos)  # one call: the packed canvas and its mask
    for got_image, want_image in zip(*together, strict=True):
        assert len(got_image[0]) > 0
        for got, want in zip(got_image, want_image, strict=True):
            np.testing.assert_array_equal(got, want)
    assert compiled.onet_landmarks(photos[:1], [together[1][0][0]])[0].tolist() == \
        plain.onet_landmarks(photos[:1], [together[1][0][0]])[0].tolist()
