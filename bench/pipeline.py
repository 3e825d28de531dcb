"""Pipeline throughput against a bare detect+align+embed loop, measured in one run.

    .venv/bin/python bench/pipeline.py [--images 40] [--runner prism] [--detector fast|facenet] [--model NAME]
                                       [--compare-detectors [--rounds 2]] [--loop-only] [--device cpu|cuda]
                                       [--signals [--references 20]]

Both sides process the same images in one process each (Prism's LOOPBACK workers run in
this process), with the same models and settings:

* **pipeline**: images are published to a fresh topic, the pipeline reads them from Kafka
  and writes faces, crops, media rows and sightings to Milvus and MinIO. The time runs from
  the first message parsed (Prism started, models loaded in the workers' setup) to the last
  media row written, so start-up is not counted, as it is not in the loop.
* **bare loop**: decode -> detect -> align -> embed in a plain Python loop, no I/O.

``--detector`` picks the MTCNN implementation both sides use (``models.detector.implementation``);
``--model dlib-resnet-yunet`` runs both sides with that model (YuNet's faces, issue 21).
``--compare-detectors`` first runs the bare loop with facenet-pytorch's MTCNN, with FastMTCNN and
with YuNet (the ``dlib-resnet-yunet`` model) in interleaved rounds (facenet, fast, yunet, facenet,
...) on the same images and prints each side's best round and the ratios; ``--loop-only`` stops
there (no stack needed).
``--device cuda`` runs the models on the GPU (``models.device``), unchanged otherwise.

``--signals`` turns issue 20's signals on in the pipeline: the detection fallbacks (quarter
turns, thumbnail upscale), the local features (``matching.local_features``), and one watched case
with ``--references`` reference images (LFW photos, none of them in the bench images, so nothing
matches: the steady state of a scrape). Every image then gets its PDQ hash searched against the
case's reference hashes and its keypoints scored against the references'. The bare loop stays
decode -> detect -> align -> embed (the ratio the issue asks for); the signals' own work on the same
images (PDQ, keypoints, scoring) is timed beside it, so the pipeline's overhead can be told apart
from what the signals cost.

Per-stage times come from the pipeline's own Prometheus histograms; the CPU seconds that
this process, the runner and each service of the local stack used in each phase come from
``/proc``. The printed Markdown goes into docs/benchmarks.md with the command that made it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mimamori.core.config import load_settings  # noqa: E402
from mimamori.stack.process import children_cpu_seconds, process_table, tree_cpu_seconds  # noqa: E402
from tests.support import edits  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"


def bench_images(count: int) -> list[bytes]:
    """Distinct JPEGs: each shared photo cropped by a different amount."""
    photos = [Image.open(p).convert("RGB") for p in sorted((TESTDATA / "faces").glob("*.jpg"))]
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        cropped = edits.crop(photo, 0.02 + 0.3 * (i // len(photos)) / max(1, count // len(photos)))
        buffer = io.BytesIO()
        cropped.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def bare_loop(settings, images: list[bytes], encoder=None) -> dict[str, float]:
    from mimamori.media.decode import decode_media
    from mimamori.models.face_encoder import FaceEncoder

    encoder = encoder or FaceEncoder(settings)
    timings: dict[str, float] = {}

    def timed(stage: str, work):
        wall, cpu = time.perf_counter(), time.thread_time()
        result = work()
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - wall
        timings[f"{stage} cpu"] = timings.get(f"{stage} cpu", 0.0) + time.thread_time() - cpu
        return result

    faces = 0
    cpu_before = cpu_seconds(settings.stack.home)
    began = time.perf_counter()
    for data in images:
        frame = timed("decode", lambda data=data: decode_media(data, "image/jpeg").frames[0].image)
        found = timed("detect", lambda frame=frame: encoder.detect(frame))
        aligned = timed("align", lambda frame=frame, found=found: encoder.align(frame, found))
        if aligned:
            timed("embed", lambda aligned=aligned: encoder.embed([crop for crop, _ in aligned]))
        faces += len(aligned)
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "images_per_s": len(images) / elapsed, "faces": faces,
            "cpu": cpu_used(cpu_before, cpu_seconds(settings.stack.home)), **timings}


def reference_photos(count: int) -> list[Path]:
    """LFW photos for a case's references: the first photo of each of the last ``count`` people."""
    people = sorted(p for p in (TESTDATA / "lfw").iterdir() if p.is_dir())
    return [sorted(person.glob("*.jpg"))[0] for person in people[-count:]]


def enrol_references(settings, count: int) -> int:
    """One case whose consent covers the watchlist, with ``count`` reference images; returns how many
    reference hashes it has (through the service layer, as the API and the CLI enrol them)."""
    from mimamori.services import cases, references
    from mimamori.services.audit import Actor
    from mimamori.services.consent import ConsentRecord, record_consent
    from mimamori.services.workspace import Workspace

    work, actor, now = Workspace(settings), Actor("bench", "admin"), dt.datetime.now(dt.UTC)
    cases.create_case(work, actor, "bench-case", "Bench client")
    record_consent(work, actor, "bench-case", ConsentRecord.model_validate({
        "given_by": "bench", "given_at": (now - dt.timedelta(days=1)).isoformat(),
        "scope": ["search", "watchlist", "takedown"], "recorded_by": "bench"}))
    uploads = [(path.name, path.read_bytes(), "image/jpeg") for path in reference_photos(count)]
    result = references.add_references(work, actor, "bench-case", uploads, "bench")
    return sum(view.hashes for view in result.references)


def signal_work(settings, images: list[bytes], count: int) -> dict[str, float]:
    """The signals' own work on the bench images outside the pipeline: PDQ of each frame (as Dedupe
    hashes it), and its keypoints scored against ``count`` reference images' (as the writer's watchlist
    does)."""
    from mimamori.media import local_features
    from mimamori.media.decode import decode_media
    from mimamori.media.pdq import frame_hashes

    gallery = local_features.FeatureGallery()
    for path in reference_photos(count):  # one case: one owner, as the pipeline's index has it
        gallery.add(0, local_features.extract_reference(Image.open(path).convert("RGB")))
    frames = [decode_media(data, "image/jpeg").frames[0].image for data in images]
    timings = {"pdq": 0.0, "keypoints": 0.0}
    for frame in frames:
        t = time.perf_counter()
        frame_hashes([(0, frame)], settings.matching.scraped_pdq_max_side)
        timings["pdq"] += time.perf_counter() - t
        t = time.perf_counter()
        gallery.scores(local_features.extract(frame))
        timings["keypoints"] += time.perf_counter() - t
    return timings


def pipeline_run(settings, images: list[bytes], runner: str) -> dict[str, float]:
    import apache_beam as beam

    from mimamori.cli.runner import pipeline_options
    from mimamori.core import metrics
    from mimamori.stores.media import ensure_media_collections
    from mimamori.stores.objects import object_client
    from mimamori.streams.events import MediaEvent, now_utc
    from mimamori.streams.ingest import store_bytes
    from mimamori.streams.producer import shared_producer
    from mimamori.transforms.pipeline import SourceOptions, build_pipeline

    media_collection, _ = ensure_media_collections(settings)  # made by scratch_settings
    client, producer = object_client(settings), shared_producer(settings.kafka)
    for i, data in enumerate(images):
        key, sha = store_bytes(client, settings.minio.buckets.media.name, data, "image/jpeg")
        event = MediaEvent(media_id=f"bench:{i}", source_url=f"https://example.test/bench/{i}.jpg",
                           platform="bench", scraped_at=now_utc(), content_type="image/jpeg",
                           object_key=key, sha256=sha)
        producer.send(settings.kafka.topics.media_scraped.name, key=event.media_id.encode(), value=event.to_json())
    producer.flush()

    marks: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    done = threading.Event()

    def parsed() -> float:
        return sum(sample.value for family in metrics.STAGE_ELEMENTS.collect() for sample in family.samples
                   if sample.name.endswith("_total") and sample.labels["stage"] == "parse")

    def media_written() -> float:  # counted after a media row's upsert was acknowledged
        return sum(sample.value for family in metrics.MEDIA.collect() for sample in family.samples
                   if sample.name.endswith("_total"))

    def watch() -> None:
        # From the first message parsed (runner started, models loaded) to the last media row
        # written. Read from the in-process metrics (LOOPBACK workers run here), not from Milvus:
        # polling Milvus would cost the worker's process time that the loop does not pay.
        while not done.is_set():
            now = time.perf_counter()
            if "first" not in marks and parsed() >= 1:
                marks["first"], cpu["first"] = now, cpu_seconds(settings.stack.home)
            if "first" in marks and media_written() >= len(images):
                marks["last"], cpu["last"] = now, cpu_seconds(settings.stack.home)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.perf_counter()
    with beam.Pipeline(options=pipeline_options(settings, runner)) as pipeline:
        build_pipeline(pipeline, settings, SourceOptions(until_idle_s=5))
    done.set()
    watcher.join(5)
    if "last" not in marks:
        raise SystemExit("the pipeline finished without writing every media row")
    rows = media_collection.query("", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    if rows != len(images):
        raise SystemExit(f"{rows} media rows in Milvus for {len(images)} images")
    stage_seconds = {}
    for family in metrics.STAGE_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                stage_seconds[sample.labels["stage"]] = sample.value
    for family in metrics.STAGE_CPU_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                stage_seconds[f"{sample.labels['stage']} cpu"] = sample.value
    seconds = marks["last"] - marks["first"]
    return {"wall_seconds": time.perf_counter() - began, "seconds": seconds, "images_per_s": len(images) / seconds,
            "cpu": cpu_used(cpu["first"], cpu["last"]), **stage_seconds}


def compare_detectors(settings, images: list[bytes], rounds: int) -> dict[str, dict[str, float]]:
    """The bare loop with each MTCNN implementation and with YuNet, in interleaved rounds; each side's best round."""
    from mimamori.models.face_encoder import FaceEncoder
    from mimamori.models.registry import DLIB_RESNET, DLIB_RESNET_YUNET

    encoders = {}
    for implementation, model in (("facenet", DLIB_RESNET), ("fast", DLIB_RESNET), ("yunet", DLIB_RESNET_YUNET)):
        variant = settings.model_copy(deep=True)
        variant.models.detector.implementation = "fast" if implementation == "yunet" else implementation
        variant.models.embedder.name = model.name
        encoders[implementation] = (variant, FaceEncoder(variant))
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for implementation, (variant, encoder) in encoders.items():
            loop = bare_loop(variant, images, encoder)
            if implementation not in best or loop["seconds"] < best[implementation]["seconds"]:
                best[implementation] = loop
    return best


def print_comparison(best: dict[str, dict[str, float]], images: int, rounds: int) -> None:
    print(f"| bare loop, {images} images, best of {rounds} interleaved rounds | img/s | detect s | "
          "CPU s of this process | faces |")
    print("| --- | --- | --- | --- | --- |")
    for implementation, loop in best.items():
        print(f"| {implementation} | {loop['images_per_s']:.2f} | {loop['detect']:.2f} | "
              f"{loop['cpu']['this process']:.1f} | {loop['faces']} |")
    for other in ("fast", "yunet"):
        ratio = best[other]["images_per_s"] / best["facenet"]["images_per_s"]
        detect = best["facenet"]["detect"] / best[other]["detect"]
        cpu = best["facenet"]["cpu"]["this process"] / best[other]["cpu"]["this process"]
        print(f"| speed-up, {other} over facenet | **{ratio:.2f}** (loop) | **{detect:.2f}** (detect) | {cpu:.2f} | |")
    print()


def cpu_seconds(stack_home: Path) -> dict[str, float]:
    """CPU seconds used so far by this process, the runner it started, and each stack service.

    A service's figure includes its children (Milvus runs under a network-namespace helper).
    Subtracting two readings says where a phase's CPU went on this shared machine.
    """
    table = process_table()
    used = {"this process": table[os.getpid()].cpu_seconds,
            "runner (Prism)": children_cpu_seconds(table, "prism")}
    for pidfile in sorted((stack_home / "run").glob("*.pid")):
        try:
            used[pidfile.stem] = tree_cpu_seconds(table, json.loads(pidfile.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return used


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--runner", default="prism", choices=["prism", "direct"])
    parser.add_argument("--partitions", type=int, default=1,
                        help="partitions of the bench's topic. One, like the loop's one thread: each partition "
                             "is read by a bundle of its own, and the bundles of one worker process compete "
                             "for its interpreter lock")
    parser.add_argument("--detector", choices=["fast", "facenet"], default=None,
                        help="MTCNN implementation for the loop and the pipeline (default: the configuration's)")
    parser.add_argument("--model", default=None,
                        help="the registry's model for both sides, e.g. dlib-resnet-yunet (default: configured)")
    parser.add_argument("--compare-detectors", action="store_true",
                        help="first the bare loop with each implementation, interleaved, on the same images")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --compare-detectors")
    parser.add_argument("--loop-only", action="store_true", help="only --compare-detectors: no stack, no pipeline")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="models.device for the loop and the pipeline's workers (default: the configuration's)")
    parser.add_argument("--signals", action="store_true",
                        help="issue 20's signals on: detection fallbacks, local features, one watched case with "
                             "--references reference images")
    parser.add_argument("--references", type=int, default=20, help="reference images of --signals' case")
    args = parser.parse_args()
    images = bench_images(args.images)
    base = load_settings("local")
    if args.detector:
        base.models.detector.implementation = args.detector
    if args.model:
        base.models.embedder.name = args.model
    if args.device:
        base.models.device = args.device
    if args.signals:
        base.models.detector.fallbacks.rotations = (90, 180, 270)
        base.models.detector.fallbacks.upscale_below = 160
        base.matching.local_features = True
    if args.loop_only:
        print_comparison(compare_detectors(base, images, args.rounds), args.images, args.rounds)
        return
    from tests.support.scratch import scratch_settings  # the stack's clients: not needed by --loop-only

    # Topics, collections and buckets of its own, removed afterwards.
    with scratch_settings(base, "b", partitions=args.partitions) as settings:
        settings.pipeline.near_duplicate_distance = -1  # every image is embedded, as in the loop
        if args.compare_detectors:
            print_comparison(compare_detectors(settings, images, args.rounds), args.images, args.rounds)
        hashes = enrol_references(settings, args.references) if args.signals else 0
        loop = bare_loop(settings, images)
        signals = signal_work(settings, images, args.references) if args.signals else {}
        run = pipeline_run(settings, images, args.runner)
    ratio = run["images_per_s"] / loop["images_per_s"]
    print(f"| {args.images} images, {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"device {settings.models.device}, model {settings.models.embedder.name}, detector "
          f"{settings.models.detector.implementation} | images/s |")
    print("| --- | --- |")
    print(f"| bare detect+align+embed loop | {loop['images_per_s']:.2f} |")
    print(f"| pipeline, Kafka in -> Milvus written ({args.runner}) | {run['images_per_s']:.2f} |")
    print(f"| ratio pipeline / loop | {ratio:.2f} |")
    if signals:
        with_signals = args.images / (loop["seconds"] + sum(signals.values()))
        print(f"| loop plus the signals' own work (PDQ {signals['pdq']:.2f} s, keypoints and scoring "
              f"{signals['keypoints']:.2f} s) | {with_signals:.2f} |")
        print(f"| ratio pipeline / (loop plus signals) | {run['images_per_s'] / with_signals:.2f} |")
        print(f"\nsignals on: fallbacks {settings.models.detector.fallbacks.rotations}, upscale below "
              f"{settings.models.detector.fallbacks.upscale_below} px, local features; one watched case with "
              f"{args.references} reference images ({hashes} PDQ hashes)")
    print()
    print("| stage | loop s | pipeline s | loop, CPU s of its thread | pipeline, CPU s of its thread |")
    print("| --- | --- | --- | --- | --- |")
    stages = ("parse", "decode", "dedupe", "local_scores", "detect", "align", "embed", "write")
    for stage in (name for name in stages if name in run or name in loop):
        print(f"| {stage} | {loop.get(stage, 0.0):.2f} | {run.get(stage, 0.0):.2f} | "
              f"{loop.get(f'{stage} cpu', 0.0):.2f} | {run.get(f'{stage} cpu', 0.0):.2f} |")
    print(f"\npipeline {run['seconds']:.1f} s from the first message parsed to the last media row written "
          f"({run['wall_seconds']:.1f} s with start-up and the 5 s idle end); "
          f"loop {loop['seconds']:.1f} s for {loop['faces']} faces\n")
    print("| CPU seconds used by | during the loop | during the pipeline |")
    print("| --- | --- | --- |")
    for name in run["cpu"]:
        print(f"| {name} | {loop['cpu'].get(name, 0.0):.1f} | {run['cpu'][name]:.1f} |")


if __name__ == "__main__":
    main()
