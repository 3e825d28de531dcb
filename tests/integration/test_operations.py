"""Operating it: replays of a time window, re-driving dead letters, promoting a model's collection."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from mimamori.cli.main import main
from mimamori.core.timefmt import iso_z_from_epoch
from mimamori.stores.faces import alias_target, search_alias
from mimamori.stores.objects import object_client
from tests.integration import samples as sample_sets
from tests.integration.helpers import isolated_settings, publish, read_topic, run_pipeline, site_config, snapshot

pytestmark = pytest.mark.integration
HOUR_MS = 3600 * 1000


def iso(ms: int) -> str:
    return iso_z_from_epoch(ms / 1000, "seconds")


def committed(settings, group: str) -> dict[int, int | None]:
    topic = settings.kafka.topics.media_scraped.name
    consumer = KafkaConsumer(**settings.kafka.client_options(), group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in consumer.partitions_for_topic(topic)}
    finally:
        consumer.close()


def portraits(testdata, *names: str) -> list[sample_sets.Sample]:
    return [s for s in sample_sets.good_samples(testdata) if s.name in names]


def test_replaying_one_window_reprocesses_only_it_and_leaves_live_offsets_and_counts(
        stack, settings, testdata, tmp_path, capsys):
    with isolated_settings(settings) as s:
        now = int(time.time() * 1000)
        publish(s, portraits(testdata, "paul_rudd", "kate_siegel"), "early", timestamp_ms=now - 2 * HOUR_MS)
        publish(s, portraits(testdata, "shea_whigham", "angelina_jolie"), "late", timestamp_ms=now - HOUR_MS)
        run_pipeline(s, s.kafka.consumer_group)
        counts, live = snapshot(s), committed(s, s.kafka.consumer_group)
        assert counts["faces"] == 4 and sum(live.values()) == 4

        cli = site_config(s, tmp_path)
        window = ["--from", iso(now - 2 * HOUR_MS - 60_000), "--to", iso(now - 90 * 60_000)]
        assert main([*cli, "replay", *window, "--dry-run"]) == 0
        assert ": 2 message(s)" in capsys.readouterr().out
        for _ in range(2):  # twice: a replay is idempotent
            assert main([*cli, "replay", *window]) == 0
            summary = capsys.readouterr().out
            assert re.search(r"replay done: 2 media \(2 sightings\), 0 faces written, 0 dead letters", summary), summary
            assert snapshot(s) == counts
        # Processed again for real (--reprocess): the faces announced anew are the first window's only.
        announced = read_topic(s, s.kafka.topics.faces_indexed.name)
        assert main([*cli, "replay", *window, "--reprocess"]) == 0
        assert re.search(r"replay done: 2 media \(0 sightings\), 2 faces written", capsys.readouterr().out)
        # Events carry their indexing time, so the new ones differ from every earlier one.
        again = [e for e in read_topic(s, s.kafka.topics.faces_indexed.name) if e not in announced]
        assert sorted(event["media_id"] for event in again) == ["early:kate_siegel", "early:paul_rudd"]
        assert snapshot(s) == counts
        assert committed(s, s.kafka.consumer_group) == live


def test_a_replay_with_reprocess_detects_again_and_drops_faces_no_longer_found(
        stack, settings, testdata, tmp_path, capsys):
    """After a detection fix: the media goes through the pipeline again; a false face of the old
    detector (planted here) is deleted with its crop; the real face keeps its key; live offsets stay."""
    from mimamori.stores.faces import ensure_face_collection
    from mimamori.transforms.write import crop_key, face_id

    with isolated_settings(settings) as s:
        now = int(time.time() * 1000)
        publish(s, portraits(testdata, "paul_rudd"), "fixed", timestamp_ms=now - HOUR_MS)
        run_pipeline(s, s.kafka.consumer_group)
        counts, live = snapshot(s), committed(s, s.kafka.consumer_group)
        assert counts["faces"] == 1

        faces = ensure_face_collection(s)
        fields = [field.name for field in faces.schema.fields]
        [real] = faces.query("face_id != 0", output_fields=fields, consistency_level="Strong")
        sha = real["media_sha256"]
        false_key = crop_key(s.models.embedder.name, sha, real["frame_ms"], 7)
        false_face = dict(real, face_index=7, crop_key=false_key,
                          face_id=face_id(sha, real["frame_ms"], 7, real["model_version"]))
        faces.upsert([false_face])
        faces.flush()
        crops, bucket = object_client(s), s.minio.buckets.crops.name
        crops.put_object(bucket, false_key, io.BytesIO(b"\xff\xd8 old crop"), 10)
        assert snapshot(s)["faces"] == 2

        cli = site_config(s, tmp_path)
        window = ["--from", iso(now - HOUR_MS - 60_000), "--to", iso(now - HOUR_MS + 60_000)]
        assert main([*cli, "replay", *window, "--reprocess"]) == 0
        summary = capsys.readouterr().out
        assert "processed again" in summary
        assert re.search(r"replay done: 1 media \(0 sightings\), 1 faces written, 0 dead letters", summary), summary
        assert snapshot(s) == counts
        [kept] = faces.query("face_id != 0", output_fields=["face_id"], consistency_level="Strong")
        assert kept["face_id"] == real["face_id"]
        assert [o.object_name for o in crops.list_objects(bucket, prefix=false_key)] == []
        assert [o.object_name for o in crops.list_objects(bucket, prefix=real["crop_key"])] == [real["crop_key"]]
        assert committed(s, s.kafka.consumer_group) == live


def test_a_replay_runs_on_flink_and_reports_the_workers_totals(stack, settings, testdata, tmp_path, capsys):
    """The summary comes from the job's own counters (Beam metrics), not from this process."""
    with isolated_settings(settings) as s:
        now = int(time.time() * 1000)
        publish(s, portraits(testdata, "kate_siegel"), "flink", timestamp_ms=now - HOUR_MS)
        run_pipeline(s, s.kafka.consumer_group)
        counts = snapshot(s)
        window = ["--from", iso(now - HOUR_MS - 60_000), "--to", iso(now - HOUR_MS + 60_000)]
        assert main([*site_config(s, tmp_path), "replay", *window, "--runner", "flink", "--reprocess"]) == 0
        summary = capsys.readouterr().out
        assert re.search(r"replay done: 1 media \(0 sightings\), 1 faces written, 0 dead letters", summary), summary
        assert snapshot(s) == counts


def test_dead_letters_are_redriven_after_a_fix(stack, settings, testdata, tmp_path, capsys):
    with isolated_settings(settings) as s:
        portrait = portraits(testdata, "shea_whigham")[0]
        # The scraper published the event before the bytes reached MinIO: a dead letter.
        early = sample_sets.Sample("shea_early", None, "image/jpeg", "dlq:object_missing")
        ids = publish(s, [early], "fix")
        run_pipeline(s, s.kafka.consumer_group)
        letters = read_topic(s, s.kafka.topics.media_dlq.name)
        assert [letter["reason"] for letter in letters] == ["object_missing"], letters
        # The original message travels with the dead letter.
        event = json.loads(base64.b64decode(letters[0]["original"]["value_base64"]))

        # The fix: the bytes arrive under the key the event names.
        object_client(s).put_object(s.minio.buckets.media.name, event["object_key"], io.BytesIO(portrait.data),
                                    len(portrait.data))
        cli = site_config(s, tmp_path)
        assert main([*cli, "dlq", "replay", "--reason", "object_missing", "--dry-run"]) == 0
        assert "would republish 1" in capsys.readouterr().out
        assert main([*cli, "dlq", "replay", "--reason", "object_missing"]) == 0
        assert "republished 1" in capsys.readouterr().out
        run_pipeline(s, s.kafka.consumer_group)
        assert snapshot(s)["faces"] == 1
        assert list(ids) == ["fix:shea_early"]
        # Each letter is re-driven once: a second run finds nothing new, unless asked to take all again.
        assert main([*cli, "dlq", "replay", "--reason", "object_missing"]) == 0
        assert "republished 0" in capsys.readouterr().out
        assert main([*cli, "dlq", "replay", "--reason", "object_missing", "--again", "--dry-run"]) == 0
        assert "would republish 1" in capsys.readouterr().out


def test_promote_switches_search_to_another_models_collection_and_rollback_switches_back(
        stack, settings, testdata, tmp_path, capsys):
    from mimamori.stores.face_search import FaceSearch

    with isolated_settings(settings) as s:
        s.models.embedder.allow_random_weights = True  # FaceNet has no real weights here
        now = int(time.time() * 1000)
        publish(s, portraits(testdata, "paul_rudd"), "promote", timestamp_ms=now - HOUR_MS)
        publish(s, portraits(testdata, "kate_siegel"), "promote", timestamp_ms=now - 60_000)
        run_pipeline(s, s.kafka.consumer_group)
        cli = site_config(s, tmp_path)
        assert main([*cli, "collections", "promote", "dlib-resnet"]) == 0
        assert alias_target(s) == s.face_collection("dlib-resnet")
        running = FaceSearch(s)  # a long-lived searcher, as the API holds one
        assert running.model == "dlib-resnet"
        # Refused (exit 2, the reason on stderr): nothing embedded with FaceNet yet.
        assert main([*cli, "collections", "promote", "facenet-vggface2"]) == 2
        assert "holds no faces" in capsys.readouterr().err
        # Re-embed the same media with FaceNet, into its own collection, then point search at it:
        # not before the backfill has reached every media item.
        first = ["--from", iso(now - HOUR_MS - 60_000), "--to", iso(now - HOUR_MS + 60_000)]
        assert main([*cli, "replay", *first, "--model", "facenet-vggface2"]) == 0
        assert "1 faces written" in capsys.readouterr().out
        assert main([*cli, "collections", "promote", "facenet-vggface2"]) == 2
        assert re.search(r"has processed 1 media, dlib-resnet .* 2: finish the backfill", capsys.readouterr().err)
        rest = ["--from", iso(now - HOUR_MS + 60_000), "--to", "now"]
        assert main([*cli, "replay", *rest, "--model", "facenet-vggface2"]) == 0
        assert "1 faces written" in capsys.readouterr().out
        assert main([*cli, "collections", "promote", "facenet-vggface2"]) == 0
        assert alias_target(s) == s.face_collection("facenet-vggface2")
        assert FaceSearch(s).model == "facenet-vggface2"
        running.follow_alias()  # what every search does first: no restart needed
        assert running.model == "facenet-vggface2" and running.faces.name == s.face_collection("facenet-vggface2")
        assert main([*cli, "collections", "rollback"]) == 0
        assert alias_target(s) == s.face_collection("dlib-resnet") and FaceSearch(s).model == "dlib-resnet"
        running.follow_alias()
        assert running.model == "dlib-resnet"
        assert search_alias(s).endswith("_search")


def test_a_replay_with_the_yunet_model_backfills_its_own_collection_once(stack, settings, testdata, tmp_path, capsys):
    """Switching detector is switching model (issue 21): `replay --model dlib-resnet-yunet` indexes
    the same media again into that model's collection, with its version; a second replay adds nothing."""
    import numpy as np

    from mimamori.models.registry import DLIB_RESNET_YUNET
    from mimamori.stores.faces import ensure_face_collection
    from tests.integration.helpers import query_all

    with isolated_settings(settings) as s:
        now = int(time.time() * 1000)
        publish(s, portraits(testdata, "paul_rudd", "kate_siegel"), "yunet", timestamp_ms=now - 60_000)
        run_pipeline(s, s.kafka.consumer_group)
        cli = site_config(s, tmp_path)
        window = ["--from", iso(now - HOUR_MS), "--to", "now"]
        assert main([*cli, "replay", *window, "--model", DLIB_RESNET_YUNET.name]) == 0
        assert "2 faces written" in capsys.readouterr().out
        assert main([*cli, "replay", *window, "--model", DLIB_RESNET_YUNET.name]) == 0
        assert "0 faces written" in capsys.readouterr().out  # already indexed for that model
        fields = ["media_sha256", "model_version", "embedding"]
        mtcnn = {r["media_sha256"]: r for r in query_all(ensure_face_collection(s), fields)}
        yunet_collection = ensure_face_collection(s, DLIB_RESNET_YUNET.name)
        yunet = {r["media_sha256"]: r for r in query_all(yunet_collection, fields)}
        assert yunet_collection.name != ensure_face_collection(s).name
        assert set(yunet) == set(mtcnn) and len(yunet) == 2
        for sha, row in yunet.items():
            assert row["model_version"].startswith(DLIB_RESNET_YUNET.version + "@")
            # the same face, aligned from O-Net's landmarks on YuNet's box: the same person's vector
            assert float(np.dot(row["embedding"], mtcnn[sha]["embedding"])) > DLIB_RESNET_YUNET.match_threshold
