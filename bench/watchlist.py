"""Time from a re-upload's event on media.scraped to its watchlist match in the case database.

On the local stack: four cases are enrolled (one portrait each, from ../shared/testdata);
the pipeline runs on Prism; once it is warm (a first re-upload has been matched), edited
re-uploads of the enrolled portraits (a new light crop each time, so each is new media and
goes through detect, align, embed) are published one every few seconds, and each one's delay
from the event's scraped_at to the match row's created_at is recorded.

Run:

    .venv/bin/python bench/watchlist.py --reuploads 12

Target (issue 5): median under 10 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import threading
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.cli.runner import pipeline_options
from mimamori.core.config import load_settings
from mimamori.services.audit import Actor
from mimamori.services.cases import create_case
from mimamori.services.consent import ConsentRecord
from mimamori.services.enrolment import enroll
from mimamori.services.workspace import Workspace
from mimamori.stores.cases import Match
from mimamori.stores.objects import object_client
from mimamori.streams.events import MediaEvent, now_utc
from mimamori.streams.ingest import store_bytes
from mimamori.streams.producer import shared_producer
from mimamori.transforms.pipeline import SourceOptions, build_pipeline
from tests.support import edits
from tests.support.scratch import scratch_settings

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
PORTRAITS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuploads", type=int, default=12)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between re-uploads")
    args = parser.parse_args()
    # Topics, collections, buckets and a case database of its own, removed afterwards. One
    # partition: --until-idle ends a partition's read once it has been idle that long, and with
    # several partitions one of them could sit idle between two re-uploads.
    with scratch_settings(load_settings("local"), "w", partitions=1) as settings:
        # Two crops of one portrait can be near duplicates (a sighting, no new match): embed every one.
        settings.pipeline.near_duplicate_distance = -1
        return measure_delays(settings, args)


def measure_delays(settings, args: argparse.Namespace) -> int:
    work = Workspace(settings)
    actor = Actor("bench", "operator")
    consent = ConsentRecord(given_by="bench", given_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                            scope=["search", "watchlist"], recorded_by="bench")
    photos = {name: Image.open(TESTDATA / "faces" / f"{name}.jpg").convert("RGB") for name in PORTRAITS}
    for name, photo in photos.items():
        create_case(work, actor, name, name)
        enroll(work, actor, name, [(f"{name}.jpg", jpeg(photo), "image/jpeg")], consent)

    objects, producer = object_client(settings), shared_producer(settings.kafka)

    def publish(i: int) -> str:
        name = PORTRAITS[i % len(PORTRAITS)]
        # A different light crop each time (new media), never into the face.
        data = jpeg(edits.crop(photos[name], 0.02 + 0.01 * (i // len(PORTRAITS) % 10)))
        key, sha = store_bytes(objects, settings.minio.buckets.media.name, data, "image/jpeg")
        event = MediaEvent(media_id=f"reupload:{i}", source_url=f"https://example.test/{i}.jpg", platform="bench",
                           scraped_at=now_utc(), content_type="image/jpeg", object_key=key, sha256=sha)
        producer.send(settings.kafka.topics.media_scraped.name, key=event.media_id.encode(), value=event.to_json())
        producer.flush()
        return sha

    def wait_for_match(sha: str, timeout_s: float = 120.0) -> Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with work.sessions() as session:
                match = session.query(Match).filter(Match.media_sha256 == sha).first()
            if match is not None:
                return match
            time.sleep(0.1)
        raise SystemExit(f"no match for {sha} within {timeout_s} s")

    delays: list[float] = []

    def measure() -> None:
        warm_up = wait_for_match(publish(0), timeout_s=300)
        print(f"warm-up re-upload matched after {(warm_up.created_at - warm_up.scraped_at).total_seconds():.1f} s "
              "(runner start-up and model loading included; not counted)", flush=True)
        for i in range(1, args.reuploads + 1):
            match = wait_for_match(publish(i))
            delays.append((match.created_at - match.scraped_at).total_seconds())
            print(f"re-upload {i} ({PORTRAITS[i % len(PORTRAITS)]}): matched after {delays[-1]:.2f} s", flush=True)
            time.sleep(max(0.0, args.interval - delays[-1]))

    # Beam's job server wants the main thread; the re-uploads are published beside it.
    measurer = threading.Thread(target=measure, daemon=True)
    measurer.start()
    _run_pipeline(settings)  # ends once the topic has been idle for 15 s
    measurer.join(timeout=5)
    if len(delays) < args.reuploads:
        raise SystemExit(f"only {len(delays)} of {args.reuploads} re-uploads were matched")
    delays.sort()
    print(f"\n| re-uploads | median s | 90th percentile s | max s |\n| --- | --- | --- | --- |\n"
          f"| {len(delays)} | {statistics.median(delays):.2f} | {delays[int(0.9 * (len(delays) - 1))]:.2f} | "
          f"{delays[-1]:.2f} |")
    return 0


def _run_pipeline(settings) -> None:
    import apache_beam as beam

    with beam.Pipeline(options=pipeline_options(settings, "prism", until_idle_s=15)) as pipeline:
        build_pipeline(pipeline, settings, SourceOptions(until_idle_s=15))


if __name__ == "__main__":
    sys.exit(main())
