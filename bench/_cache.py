"""The benchmarks' one cache of LFW face vectors, under ``~/.cache/mimamori/bench/``.

Embedding the 1,580 LFW photos through detect -> align -> embed takes minutes on a CPU, and
several benchmarks (bench/case_model.py, bench/matching.py) need the same vectors. They are
kept outside the repository, in one ``.npz`` per embedder version and LFW manifest: the key is
the model's version string (which names its weights file and their hash) and the sha256 of
``lfw/MANIFEST-sha256.tsv`` (which lists every photo's own sha256), so new weights or other
photos never read stale vectors. Delete the folder to recompute.

``write_block`` puts a benchmark's results into its block of a markdown file.

Which face of a photo: LFW centres the named person in each 250x250 photo, so the face whose
box centre is nearest the image centre (other people appear at the edges of news photos).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
LFW = TESTDATA / "lfw"


def cache_dir() -> Path:
    root = Path(os.environ.get("MIMAMORI_BENCH_CACHE", Path.home() / ".cache" / "mimamori" / "bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(kind: str, model_version: str, data_file: Path) -> Path:
    """Where ``kind`` (e.g. "lfw-faces") of ``model_version`` over ``data_file``'s content is cached."""
    key = hashlib.sha256(f"{kind}\n{model_version}\n{file_sha256(data_file)}".encode()).hexdigest()[:16]
    return cache_dir() / f"{kind}-{key}.npz"


@dataclass(frozen=True)
class LfwFaces:
    """One vector per LFW photo where a face was found (photos without one are left out)."""

    model_version: str
    files: np.ndarray  # "<Name>/<Name>_NNNN.jpg", in manifest order
    people: np.ndarray  # the person's name of each row
    vectors: np.ndarray  # float32, L2-normalised, one row per file
    missed: int  # photos in which no face was found

    def by_person(self) -> dict[str, np.ndarray]:
        """Person -> the row numbers of their photos."""
        found: dict[str, list[int]] = {}
        for row, person in enumerate(self.people):
            found.setdefault(str(person), []).append(row)
        return {person: np.array(rows) for person, rows in found.items()}


def lfw_files() -> list[str]:
    manifest = LFW / "MANIFEST-sha256.tsv"
    if not manifest.is_file():
        raise SystemExit(f"no LFW manifest at {manifest} (see ../shared/testdata/README.md)")
    return [line.split("\t", 1)[1].strip() for line in manifest.read_text().splitlines() if line.strip()]


def write_block(path: Path, start: str, end: str, text: str) -> None:
    """Replace what stands between a benchmark's ``start`` and ``end`` markers in a markdown file."""
    document = path.read_text()
    if start not in document or end not in document:
        raise SystemExit(f"{path} has no results block ({start} ... {end})")
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def _central_face(faces, size: tuple[int, int]):
    cx, cy = size[0] / 2, size[1] / 2

    def distance(face) -> float:
        x1, y1, x2, y2 = face.detection.box[:4]
        return ((x1 + x2) / 2 - cx) ** 2 + ((y1 + y2) / 2 - cy) ** 2

    return min(faces, key=distance)


def lfw_faces(model: str = "dlib-resnet", progress: bool = True) -> LfwFaces:
    """The LFW vectors of ``model`` (the configured local settings' detector), cached."""
    from PIL import Image

    from mimamori.core.config import EmbedderConfig, load_settings
    from mimamori.models.embedders import embedder_version

    config = EmbedderConfig(name=model)
    version = embedder_version(config)
    path = cache_path("lfw-faces", version, LFW / "MANIFEST-sha256.tsv")
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return LfwFaces(version, data["files"], data["people"], data["vectors"], int(data["missed"]))

    from mimamori.models.face_encoder import FaceEncoder

    encoder = FaceEncoder(load_settings("local"), config)
    files, vectors, missed = [], [], 0
    began = time.perf_counter()
    names = lfw_files()
    for number, name in enumerate(names, 1):
        image = Image.open(LFW / name).convert("RGB")
        faces = encoder.encode(image)
        if faces:
            files.append(name)
            vectors.append(_central_face(faces, image.size).vector)
        else:
            missed += 1
        if progress and number % 100 == 0:
            print(f"  embedded {number}/{len(names)} LFW photos in {time.perf_counter() - began:.0f} s", flush=True)
    people = [name.split("/", 1)[0] for name in files]
    result = LfwFaces(version, np.array(files), np.array(people), np.stack(vectors).astype(np.float32), missed)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, files=result.files, people=result.people, vectors=result.vectors, missed=missed)
    temporary.replace(path)
    return result


if __name__ == "__main__":
    faces = lfw_faces(sys.argv[1] if len(sys.argv) > 1 else "dlib-resnet")
    print(f"{len(faces.files)} LFW faces of {len(set(faces.people))} people ({faces.missed} photos without a face), "
          f"model {faces.model_version}")
