"""Where MTCNN's five landmarks sit in dlib's face chip, and how close our chips come to dlib's.

dlib's network was trained on chips cut by dlib's 5-point model (eye corners and the base
of the nose); the pipeline has MTCNN's landmarks (eye centres, nose tip, mouth corners).
For every face of the shared photos this maps MTCNN's landmarks through the chip
transform dlib's own detector and 5-point model give, and prints their mean: that is
models.registry.DLIB_CHIP_TEMPLATE. It then compares descriptors of dlib's chip with
those of our chip from dlib's points (our warp) and from MTCNN's points (our template).

Needs dlib-bin (a dev dependency). Run:

    .venv/bin/python bench/dlib_alignment.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.core.config import load_settings
from mimamori.models.alignment import align_face, similarity_transform
from mimamori.models.face_encoder import FaceEncoder
from mimamori.models.registry import DLIB_FIVE_POINT_TEMPLATE, DLIB_RESNET

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"


def main() -> int:
    encoder = FaceEncoder(load_settings("local"))
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    five_point = dataclasses.replace(DLIB_RESNET, template=DLIB_FIVE_POINT_TEMPLATE)
    dlib_template = np.array(five_point.landmarks_in_crop())
    in_frame, rows = [], []
    for path in sorted((TESTDATA / "faces").glob("*.jpg")):
        frame = Image.open(path).convert("RGB")
        pixels = np.asarray(frame)
        found = encoder.detect(frame)
        for box in detector(pixels, 1):
            shape = shapes(pixels, box)
            points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
            mtcnn = min(found, key=lambda d, p=points: np.linalg.norm(d.landmarks.mean(axis=0) - p.mean(axis=0)))
            # dlib fits chip -> image; invert it to bring MTCNN's points into the chip's unit frame.
            to_image = np.vstack([similarity_transform(dlib_template, points), [0, 0, 1]])
            to_chip = np.linalg.inv(to_image)[:2]
            chip_points = mtcnn.landmarks @ to_chip[:, :2].T + to_chip[:, 2]
            in_frame.append(chip_points / DLIB_RESNET.input_size * (1 + 2 * DLIB_RESNET.padding) - DLIB_RESNET.padding)
            chips = [dlib.get_face_chip(pixels, shape, size=150, padding=0.25),
                     align_face(frame, points, five_point), align_face(frame, mtcnn.landmarks, DLIB_RESNET)]
            batch = torch.from_numpy(np.stack([np.asarray(c) for c in chips])).permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                raw = encoder.module(batch).numpy()
            rows.append((path.stem, np.linalg.norm(raw[0] - raw[1]), np.linalg.norm(raw[0] - raw[2])))
    print("MTCNN landmarks in dlib's chip frame (mean over faces):")
    print(np.round(np.mean(in_frame, axis=0), 4).tolist())
    print("spread (standard deviation):", np.round(np.std(in_frame, axis=0), 4).tolist())
    print("\nraw descriptor distance to dlib's own chip (dlib's same-person threshold is 0.6):")
    print("photo | dlib's points, our warp | MTCNN's points, our template")
    for name, ours_dlib, ours_mtcnn in rows:
        print(f"{name} | {ours_dlib:.3f} | {ours_mtcnn:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
