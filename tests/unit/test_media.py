"""Decoding every kind of input, good and hostile, without the stack."""

from __future__ import annotations

import pytest
from PIL import Image

from mimamori.core.config import PipelineConfig
from mimamori.media.decode import MediaError, decode_media, to_rgb
from tests.integration import samples
from tests.support.pipeline import MAX_MEDIA_BYTES

LIMITS = PipelineConfig(max_media_bytes=MAX_MEDIA_BYTES)


def test_each_bad_sample_fails_with_its_reason(bad_media):
    checked = 0
    for sample in bad_media:
        reason = sample.expect.split(":")[1]
        if sample.data is None or reason in ("sha256_mismatch",):
            continue  # decided before or after decoding (missing object, event checks)
        with pytest.raises(MediaError) as raised:
            decode_media(sample.data, sample.content_type, LIMITS)
        assert raised.value.reason == reason, sample.name
        checked += 1
    assert checked >= 9


def test_unusual_encodings_decode_to_rgb(testdata):
    for sample in samples.hard_but_valid_samples(testdata):
        media = decode_media(sample.data, sample.content_type, LIMITS)
        assert media.frames, sample.name
        assert all(frame.image.mode == "RGB" for frame in media.frames), sample.name
    gif = next(s for s in samples.hard_but_valid_samples(testdata) if s.name == "animated_gif")
    animation = decode_media(gif.data, "image/gif", LIMITS)
    assert animation.kind == "animation" and len(animation.frames) == 2
    assert [f.time_ms for f in animation.frames] == [0, 500]


def test_sixteen_bit_and_alpha_keep_their_content():
    grey16 = Image.new("I;16", (40, 40), 65535)
    assert to_rgb(grey16).getpixel((0, 0)) == (255, 255, 255)
    transparent = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (128, 128, 128)  # composited on grey


def test_exif_orientation_is_applied():
    import io

    image = Image.new("RGB", (60, 40), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    media = decode_media(buffer.getvalue(), "image/jpeg", LIMITS)
    assert (media.width, media.height) == (40, 60)


def test_video_frames_are_sampled_with_their_times(testdata):
    data = (testdata / "video" / "video.mp4").read_bytes()
    media = decode_media(data, "video/mp4", PipelineConfig(max_video_frames=8, video_frame_interval_s=0.5))
    times = [frame.time_ms for frame in media.frames]
    assert media.kind == "video" and 2 <= len(times) <= 8
    assert times == sorted(times) and times[0] < 600
