"""Services killed under a running pipeline: nothing lost, nothing twice, every offset committed.

On a private stack (its own home and every port +100: tests/support/own_stack.py), so killing
its services never disturbs the stack the other tests share. Each test publishes a batch of
distinct photos (and exact re-uploads of two of them), starts ``mimamori run`` as a user would,
SIGKILLs one service once the first faces are written, brings it back with ``Stack.up()`` and
lets the same run finish. Then every media item is exactly one media row (or one sighting of a
re-upload), every face is stored once with its crop, and the consumer group's offsets are at the
end of the topic. The Milvus test keeps it away for 60 s and checks that the run said it waited
for Milvus and that Milvus recovered (issue 22, acceptance 2).

The case database is SQLite here: a file in the pipeline's own process, with no server to kill.
Its crash is the writer's: the run is SIGKILLed while the watchlist writes matches, and a second
run must leave every match a face deserves, once, in a database that passes its integrity check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from mimamori.core.config import SOURCE_ROOT
from mimamori.core.errors import PhotoRejected
from mimamori.models.registry import embedder_spec
from mimamori.services.audit import Actor
from mimamori.services.cases import create_case
from mimamori.services.consent import ConsentRecord
from mimamori.services.enrolment import enroll
from mimamori.services.workspace import Workspace
from mimamori.stack.process import port_in_use
from mimamori.stack.stack import Stack
from mimamori.stores.cases import Match, open_database
from mimamori.stores.enrolled import EnrolledFaces
from mimamori.stores.faces import ensure_face_collection
from mimamori.stores.media import ensure_media_collections
from mimamori.stores.objects import object_client
from tests.integration import samples as sample_sets
from tests.integration.helpers import publish, query_all, run_pipeline
from tests.support.own_stack import listening_ports, private_settings, start, wipe
from tests.support.scratch import scratch_settings
from tests.support.stack_cli import CLI, child_environment, mimamori, site_environment

pytestmark = pytest.mark.integration

HOME = SOURCE_ROOT / ".stack" / "crash-tests"
OFFSET = 100
PHOTOS = 24  # distinct LFW photos per test, one face each
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def private_stack(settings):
    """The private stack, started once for the module (the install cache is shared: nothing is downloaded)."""
    own = private_settings(settings, HOME, OFFSET)
    assert listening_ports(own).isdisjoint(listening_ports(settings)), "a private port is one of the shared stack's"
    stack = Stack(own)
    stack.down()  # what an interrupted earlier run left (our pidfiles, our processes only)
    wipe(HOME)
    start(stack)
    yield stack
    from mimamori.streams.producer import close_all

    close_all()
    stack.down()


@pytest.fixture
def crash_settings(private_stack):
    with scratch_settings(private_stack.settings, "crash") as s:
        s.pipeline.max_records_per_bundle = 1  # many small bundles: the kill lands between commits
        yield s


def distinct_photos(testdata: Path, skip: int) -> list[sample_sets.Sample]:
    """PHOTOS different people's photos (a different slice of LFW per test), and exact copies of two."""
    people = sorted(p for p in (testdata / "lfw").iterdir() if p.is_dir())[skip * PHOTOS:(skip + 1) * PHOTOS]
    photos = [sample_sets.Sample(person.name, (person / f"{person.name}_0001.jpg").read_bytes(), "image/jpeg",
                                 "indexed") for person in people]
    copies = [sample_sets.Sample(f"{sample.name}_copy", sample.data, "image/jpeg", "sighting:exact")
              for sample in photos[:2]]
    return photos + copies


class Run:
    """``mimamori run --until-idle`` in a process group of its own, its output in a file."""

    def __init__(self, settings, directory: Path, until_idle_s: float = 8):
        self.environment = site_environment(settings)  # the settings whole, for this and other commands
        self.output = directory / "run.log"
        with open(self.output, "wb") as log:
            self.proc = subprocess.Popen([*CLI, "run", "--until-idle", str(until_idle_s)],
                                         env=child_environment(self.environment), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=SOURCE_ROOT)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the run ended before {what}:\n{self.text()[-3000:]}"
            try:
                if condition():
                    return
            except Exception:  # a store just restarting: ask again
                pass
            time.sleep(0.5)
        raise AssertionError(f"no {what} within {timeout_s} s:\n{self.text()[-3000:]}")

    def finish(self) -> str:
        try:
            self.proc.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not finish:\n{self.text()[-3000:]}") from None
        assert self.proc.returncode == 0, f"the run failed ({self.proc.returncode}):\n{self.text()[-3000:]}"
        return self.text()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the run and the Prism runner it started
        self.proc.wait()


def kill_service(stack: Stack, name: str) -> list[int]:
    """SIGKILL every process of one service of the private stack (by its pidfiles); return the PIDs."""
    service = next(s for s in stack.services if s.name == name)
    pids = [pid for pid in service.pids().values() if pid is not None]
    assert pids, f"{name} is not running"
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)  # each leads its own process group (start_new_session)
    # Gone, and its ports closed: a multi-threaded process's leader shows as a zombie while its
    # other threads (and their sockets) are still being torn down.
    deadline = time.monotonic() + 20
    while (any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in pids)
           or any(port_in_use("127.0.0.1", port) for port in service.ports().values())):
        assert time.monotonic() < deadline, f"{name} survived SIGKILL"
        time.sleep(0.1)
    return pids


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def crops_written(settings) -> int:
    return sum(1 for _ in object_client(settings).list_objects(settings.minio.buckets.crops.name, recursive=True))


def assert_each_item_once(settings, samples: list[sample_sets.Sample], ids: dict[str, str]) -> None:
    """Every media item one media row (or one sighting of a re-upload), every face once with its crop."""
    faces = query_all(ensure_face_collection(settings), ["media_sha256", "frame_ms", "face_index", "crop_key"])
    identities = Counter((f["media_sha256"], f["frame_ms"], f["face_index"]) for f in faces)
    assert identities and max(identities.values()) == 1, "a face is stored twice"
    media, sightings = ensure_media_collections(settings)
    media_rows = Counter(row["sha256"] for row in query_all(media, ["sha256", "face_count"]))
    distinct = {hashlib.sha256(sample.data).hexdigest() for sample in samples}
    assert set(media_rows) == distinct, "a photo has no media row (lost) or a media row is not ours"
    assert max(media_rows.values()) == 1, "a photo has two media rows"
    per_media = Counter(f["media_sha256"] for f in faces)
    counts = {row["sha256"]: row["face_count"] for row in query_all(media, ["sha256", "face_count"])}
    assert all(per_media[sha] == count for sha, count in counts.items()), "a media item lost faces"
    assert sum(counts.values()) == len(faces) >= len(distinct) - 2  # one face in (nearly) every LFW photo
    seen = Counter(row["media_id"] for row in query_all(sightings, ["media_id", "match"]))
    assert set(seen) == set(ids), "a media item is neither indexed nor a sighting"
    assert max(seen.values()) == 1, "a media item was recorded twice"
    client = object_client(settings)
    for face in faces:
        assert client.stat_object(settings.minio.buckets.crops.name, face["crop_key"]).size > 500


def assert_offsets_committed(settings) -> None:
    consumer = KafkaConsumer(**settings.kafka.client_options(), group_id=settings.kafka.consumer_group)
    try:
        topic = settings.kafka.topics.media_scraped.name
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(tps)
        assert {tp: consumer.committed(tp) or 0 for tp in tps} == end, "offsets were not committed to the end"
    finally:
        consumer.close()


def crash_and_recover(stack: Stack, settings, testdata: Path, tmp_path: Path, service: str, skip: int,
                      down_s: float = 0) -> str:
    """Publish, run, kill ``service`` once faces are written, keep it down ``down_s``, bring it back,
    let the run finish; check the stores; return the run's output."""
    samples = distinct_photos(testdata, skip)
    ids = publish(settings, samples, service)
    run = Run(settings, tmp_path)
    try:
        # The first crop (written just before its face): a listing in MinIO answers at once, where
        # a strong read of Milvus waits, and the kill must land while the batch is processed.
        run.wait_for(lambda: crops_written(settings) > 0, "crop written")
        indexed_before = crops_written(settings)
        kill_service(stack, service)
        killed_at = time.monotonic()
        status = mimamori(run.environment, "stack", "status", timeout_s=120, check=False)
        assert status.returncode == 1 and f"stack: DOWN: {service} (not running" in status.stdout, status.stdout
        time.sleep(max(0.0, down_s - (time.monotonic() - killed_at)))
        Stack(stack.settings).up()  # what a user does: `mimamori stack up`
        output = run.finish()
    except BaseException:
        if run.proc.poll() is None:
            run.kill()
        Stack(stack.settings).up()  # the next test (and the scratch's removal) need every service
        raise
    assert indexed_before < len(samples) - 2, "everything was indexed before the kill: nothing was tested"
    assert_each_item_once(settings, samples, ids)
    assert_offsets_committed(settings)
    return output


def test_milvus_killed_for_a_minute_loses_nothing_and_the_run_says_it_waited(private_stack, crash_settings,
                                                                            testdata, tmp_path):
    output = crash_and_recover(private_stack, crash_settings, testdata, tmp_path, "milvus", skip=0, down_s=60)
    assert "waiting for milvus since" in output, output[-3000:]
    assert "milvus recovered after" in output, output[-3000:]
    assert "run: milvus was unreachable for" in output, output[-3000:]


def test_kafka_broker_killed_loses_nothing(private_stack, crash_settings, testdata, tmp_path):
    output = crash_and_recover(private_stack, crash_settings, testdata, tmp_path, "kafka", skip=1)
    assert "waiting for kafka since" in output and "kafka recovered after" in output, output[-3000:]


def test_minio_killed_loses_nothing(private_stack, crash_settings, testdata, tmp_path):
    crash_and_recover(private_stack, crash_settings, testdata, tmp_path, "minio", skip=2)


def test_the_watchlist_writer_killed_mid_match_loses_no_match(private_stack, crash_settings, testdata, tmp_path):
    """SIGKILL the run while it writes matches to the case database (SQLite), run again: each match once."""
    s = crash_settings
    work = Workspace(s)
    actor = Actor("crash-test", "admin")
    people = sorted(p for p in (testdata / "lfw").iterdir() if p.is_dir())[3 * PHOTOS:3 * PHOTOS + 3]
    enrolled = set()
    for person in people:  # three cases, each enrolled from the person's first photo with one face
        create_case(work, actor, person.name.lower(), person.name)
        now = dt.datetime.now(dt.UTC)
        consent = ConsentRecord(given_by="the client", given_at=now - dt.timedelta(days=1), scope=["watchlist"],
                                recorded_by="staff")
        for path in sorted(person.glob("*.jpg")):
            try:
                enroll(work, actor, person.name.lower(), [("1.jpg", path.read_bytes(), "image/jpeg")], consent)
            except PhotoRejected:  # a second face in the background: enrolment asks for the client alone
                continue
            enrolled.add(path)
            break
    assert len(enrolled) == len(people)
    samples = [sample_sets.Sample(path.stem, path.read_bytes(), "image/jpeg", "indexed")
               for person in people for path in sorted(person.glob("*.jpg")) if path not in enrolled]
    publish(s, samples, "db")
    sessions = open_database(s.database_url())

    def matches() -> int:
        with sessions() as session:
            return len(list(session.scalars(select(Match.id))))

    run = Run(s, tmp_path)
    try:
        run.wait_for(lambda: matches() > 0, "match written")
    finally:
        run.kill()  # SIGKILL: the writer of the case database dies mid-way
    killed_at = matches()
    run_pipeline(s, s.kafka.consumer_group)  # the next run takes over from the committed offsets

    with sqlite3.connect(s.database_url().removeprefix("sqlite:///")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with sessions() as session:
        found = Counter((m.case_id, m.face_id) for m in session.scalars(select(Match)))
    assert found and max(found.values()) == 1
    # Every indexed face as near an enrolled face as its case's threshold asks has its match.
    faces = query_all(ensure_face_collection(s), ["face_id", "embedding"])
    threshold = embedder_spec(s.models.embedder.name).match_threshold
    hits = EnrolledFaces(s).nearest(np.array([f["embedding"] for f in faces], dtype=np.float32), 8,
                                    [p.name.lower() for p in people])
    deserved = {(hit.case_id, face["face_id"]) for face, face_hits in zip(faces, hits, strict=True)
                for hit in face_hits if hit.similarity >= threshold}
    assert set(found) == deserved, f"{len(deserved - set(found))} match(es) lost, {killed_at} before the kill"
    assert_offsets_committed(s)
