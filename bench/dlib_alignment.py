"""Where the detector's five landmarks sit in dlib's face chip, and how close our chips come to dlib's.

dlib's network was trained on chips cut by dlib's 5-point model (eye corners and the base
of the nose); the pipeline has MTCNN's landmarks (eye centres, nose tip, mouth corners).
For every face of the shared photos this maps MTCNN's landmarks through the chip
transform dlib's own detector and 5-point model give, and prints their mean: that is
models.registry.DLIB_CHIP_TEMPLATE. It then compares descriptors of dlib's chip with
those of our chip from dlib's points (our warp) and from MTCNN's points (our template).

``--model dlib-resnet-yunet`` does the same with YuNet's landmarks (its template is printed the
same way). Needs dlib-bin (a dev dependency). Run:

    .venv/bin/python bench/dlib_alignment.py [--model dlib-resnet-yunet]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.core.config import EmbedderConfig, load_settings
from mimamori.models.alignment import align_face, similarity_transform
from mimamori.models.face_encoder import FaceEncoder
from mimamori.models.registry import DLIB_FIVE_POINT_TEMPLATE, DLIB_RESNET

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DLIB_RESNET.name, help="a dlib model of the registry (its detector)")
    parser.add_argument("--lfw-people", type=int, default=0, metavar="N",
                        help="fit on the first photo of each of the last N LFW people instead of the shared "
                             "photos (which bench/quality.py then measures on: a template not fitted on them)")
    args = parser.parse_args(argv)
    if args.lfw_people:
        people = sorted(p for p in (TESTDATA / "lfw").iterdir() if p.is_dir())[-args.lfw_people:]
        photos = [sorted(person.glob("*.jpg"))[0] for person in people]
    else:
        photos = sorted((TESTDATA / "faces").glob("*.jpg"))
    encoder = FaceEncoder(load_settings("local"), EmbedderConfig(name=args.model))
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    five_point = dataclasses.replace(DLIB_RESNET, template=DLIB_FIVE_POINT_TEMPLATE)
    dlib_template = np.array(five_point.landmarks_in_crop())
    in_frame, rows = [], []
    for path in photos:
        frame = Image.open(path).convert("RGB")
        pixels = np.asarray(frame)
        found = encoder.detect(frame)
        for box in detector(pixels, 1):
            if not found:
                continue
            shape = shapes(pixels, box)
            points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
            mtcnn = min(found, key=lambda d, p=points: np.linalg.norm(d.landmarks.mean(axis=0) - p.mean(axis=0)))
            # dlib fits chip -> image; invert it to bring MTCNN's points into the chip's unit frame.
            to_image = np.vstack([similarity_transform(dlib_template, points), [0, 0, 1]])
            to_chip = np.linalg.inv(to_image)[:2]
            chip_points = mtcnn.landmarks @ to_chip[:, :2].T + to_chip[:, 2]
            in_frame.append(chip_points / DLIB_RESNET.input_size * (1 + 2 * DLIB_RESNET.padding) - DLIB_RESNET.padding)
            chips = [dlib.get_face_chip(pixels, shape, size=150, padding=0.25),
                     align_face(frame, points, five_point), align_face(frame, mtcnn.landmarks, encoder.spec)]
            batch = torch.from_numpy(np.stack([np.asarray(c) for c in chips])).permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                raw = encoder.module(batch).numpy()
            rows.append((path.stem, np.linalg.norm(raw[0] - raw[1]), np.linalg.norm(raw[0] - raw[2])))
    print(f"{encoder.spec.detector} landmarks in dlib's chip frame (mean over {len(in_frame)} faces):")
    print(np.round(np.mean(in_frame, axis=0), 4).tolist())
    print("spread (standard deviation):", np.round(np.std(in_frame, axis=0), 4).tolist())
    print("\nraw descriptor distance to dlib's own chip (dlib's same-person threshold is 0.6):")
    print(f"photo | dlib's points, our warp | {encoder.spec.detector}'s points, our template")
    for name, ours_dlib, ours_mtcnn in rows:
        print(f"{name} | {ours_dlib:.3f} | {ours_mtcnn:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
