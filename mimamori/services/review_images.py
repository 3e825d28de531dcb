"""Face images for reviewers: blurred and greyscale unless one image is revealed.

Reviewers look at images of people who were harmed, all day. Every face image the workbench
shows is made here, on the server: scaled to a small size, Gaussian-blurred and greyscale
(the reviewer's or the organisation's settings), re-encoded as a JPEG without metadata, so the
unblurred pixels reach a browser only when the reviewer reveals that one image. A reveal
returns the stored crop as it is and is audited (who, which case, which image).
"""

from __future__ import annotations

import io
import warnings
from typing import Protocol

from PIL import Image, ImageFilter, UnidentifiedImageError

from mimamori.core.errors import InvalidInput, NotFound, TooLarge
from mimamori.media.decode import MediaError, to_rgb
from mimamori.services.access import require_case_access
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import EnrolledPhoto, Match
from mimamori.stores.objects import read_media_object

# A blur radius is in pixels of an image REFERENCE_SIDE pixels on its longest side; every image
# is scaled to max_side first, so a small crop is blurred as strongly as a large one.
REFERENCE_SIDE = 256
MAX_CROP_BYTES = 8 * 1024 * 1024  # crops are small JPEGs; anything larger is not one
MAX_CROP_PIXELS = 16_000_000


class View(Protocol):
    """How a reviewer sees images (users.ViewSettings: their own settings or the organisation's)."""

    @property
    def blur_radius(self) -> int: ...

    @property
    def greyscale(self) -> bool: ...


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_CROP_PIXELS:
                raise InvalidInput("image_too_large", f"{image.width}x{image.height} pixels is not a face crop")
            image.load()
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInput("decompression_bomb", str(error)) from None
    except UnidentifiedImageError:
        raise InvalidInput("unsupported_format", "not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidInput("corrupt_image", f"cannot decode: {error}") from None


def safe_image(data: bytes, blur_radius: int, greyscale: bool, max_side: int = 256) -> bytes:
    """The image scaled to ``max_side`` on its longest side, blurred by ``blur_radius`` (pixels at
    REFERENCE_SIDE; 0: sharp), greyscale if asked, as a JPEG that carries no EXIF or other metadata."""
    if blur_radius < 0 or max_side < 16:
        raise InvalidInput("bad_view", "the blur radius is 0 or more and images at least 16 pixels a side")
    image = _open(data)
    scale = max_side / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    if greyscale:
        image = image.convert("L")
    if blur_radius:
        image = image.filter(ImageFilter.GaussianBlur(blur_radius * max_side / REFERENCE_SIDE))
    out = io.BytesIO()
    # A new image of plain pixels: Pillow writes no EXIF, ICC profile or comment unless told to.
    Image.frombytes(image.mode, image.size, image.tobytes()).save(out, "JPEG", quality=85)
    return out.getvalue()


def _read(work: Workspace, bucket: str, key: str) -> bytes:
    try:
        return read_media_object(work.objects, bucket, key, MAX_CROP_BYTES)
    except MediaError as error:
        if error.reason == "file_too_large":
            raise TooLarge("image_too_large", str(error)) from None
        raise NotFound("image_missing", "the face image is not in the object store") from None


def _serve(work: Workspace, actor: Actor, data: bytes, view: View, reveal: bool, case_id: str, target: str,
           image: str) -> bytes:
    if not reveal:
        return safe_image(data, view.blur_radius, view.greyscale)
    record(work.sessions, actor, "reveal", case_id=case_id, target=target, image=image)
    return data


def found_face_image(work: Workspace, actor: Actor, match_id: int, view: View, reveal: bool = False) -> bytes:
    """The face the pipeline found for a match (crops bucket), blurred unless revealed."""
    target = f"match:{match_id}"
    with refusals_audited(work.sessions, actor, "reveal" if reveal else "view_image", target=target,
                          image="found_face"):
        with work.sessions() as session:
            match = session.get(Match, match_id)
            if match is None:
                raise NotFound("unknown_match", f"no match {match_id}")
            require_case_access(session, actor, match.case_id)
            case_id, face_id, version, image_key = match.case_id, match.face_id, match.model_version, match.image_key
        if image_key is None:
            face = work.searcher_of_version(version).faces_by_id({face_id}).get(face_id)
            if face is None:
                raise NotFound("face_missing", f"the face of match {match_id} is no longer in the index")
            image_key = face.crop_key
        # else a match found by image hash alone (issue 20): its frame's thumbnail, no face crop
        data = _read(work, work.settings.minio.buckets.crops.name, image_key)
        return _serve(work, actor, data, view, reveal, case_id, target, "found_face")


def enrolled_face_image(work: Workspace, actor: Actor, photo_id: int, view: View, reveal: bool = False) -> bytes:
    """An enrolled reference photo's face crop (references bucket), blurred unless revealed."""
    target = f"photo:{photo_id}"
    with refusals_audited(work.sessions, actor, "reveal" if reveal else "view_image", target=target,
                          image="enrolled_face"):
        with work.sessions() as session:
            photo = session.get(EnrolledPhoto, photo_id)
            if photo is None:
                raise NotFound("unknown_photo", f"no enrolled photo {photo_id}")
            require_case_access(session, actor, photo.case_id)
            case_id, crop_key = photo.case_id, photo.crop_key
        data = _read(work, work.settings.minio.buckets.references.name, crop_key)
        return _serve(work, actor, data, view, reveal, case_id, target, "enrolled_face")
