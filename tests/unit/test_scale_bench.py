"""The parts of bench/scale.py that decide its numbers: the vectors, the exact top-k, the summary."""

from __future__ import annotations

import numpy as np
import pytest

from bench.scale import (
    Checkpoint,
    ExactTopK,
    FaceLikeVectors,
    face_ids,
    milvus_work,
    plot,
    read_csv,
    recall_at_k,
    summarise,
    write_csv,
)
from mimamori.stores.writer import row_bytes


def test_vectors_are_shaped_like_face_embeddings():
    generator = FaceLikeVectors(seed=1)
    vectors, owner, _centres = generator.batch(6000)
    assert vectors.shape == (6000, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert 1 <= np.bincount(owner - owner.min()).max() <= generator.max_photos

    same = [(i, j) for i, j in zip(range(len(owner) - 1), range(1, len(owner)), strict=True) if owner[i] == owner[j]]
    genuine = np.array([vectors[i] @ vectors[j] for i, j in same])
    impostor = np.sum(vectors[:2000] * vectors[3000:5000], axis=1)[owner[:2000] != owner[3000:5000]]
    assert 0.65 < genuine.mean() < 0.85  # two photos of one person
    assert abs(impostor.mean()) < 0.02 and 0.08 < impostor.std() < 0.16  # two people
    assert genuine.min() > np.percentile(impostor, 99.9)  # people are separable, as with a good embedder

    _more, later_owner, _ = generator.batch(100)
    assert later_owner.min() > owner.max()  # each batch brings new people


def test_exact_top_k_over_batches_equals_brute_force():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((1000, 16)).astype(np.float32)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    ids = face_ids(0, 1000)
    truth = ExactTopK(queries, k=10)
    for start in range(0, 1000, 128):
        truth.add(data[start:start + 128], ids[start:start + 128])
    expected = ids[np.argsort(-(queries @ data.T), axis=1)[:, :10]]
    assert [set(row) for row in truth.ids.tolist()] == [set(row) for row in expected.tolist()]
    assert recall_at_k(expected.tolist(), truth.ids) == 1.0
    assert recall_at_k([row[:5] for row in expected.tolist()], truth.ids) == 0.5


def test_face_ids_are_deterministic_unique_and_positive():
    first, again = face_ids(0, 100_000), face_ids(0, 100_000)
    assert np.array_equal(first, again)
    assert len(np.unique(first)) == 100_000 and first.min() > 0
    assert not set(face_ids(100_000, 1000)) & set(first.tolist())


def test_row_bytes_counts_vectors_and_strings():
    row = {"face_id": 1, "embedding": np.zeros(512, np.float32), "url": "x" * 100, "box": {"a": 1.0, "b": 2.0}}
    assert row_bytes(row) == 8 + 2048 + 100 + 32


def checkpoint(rows: int, rate: float, rss: float) -> Checkpoint:
    return Checkpoint(index_type="IVF_SQ8", mmap=False, rows=rows, interval_rows=250_000, interval_s=80.0,
                      insert_rows_per_s=rate, index_wait_s=0.0, milvus_rss_mib=rss, milvus_anon_mib=rss - 100,
                      milvus_file_mib=100,
                      milvus_peak_mib=rss, minio_rss_mib=300, etcd_disk_mib=10, milvus_local_disk_mib=1000,
                      minio_disk_mib=2000, indexed_rows=rows, sealed_segments=rows // 250_000, growing_segments=2,
                      nq1_p50_ms=5, nq1_p99_ms=9, nq32_p50_ms=20, nq32_p99_ms=40, recall_at_10=0.9,
                      own_photos_found=1.0, elapsed_s=rows / rate)


def test_summary_fits_memory_per_million_and_the_rate_change(tmp_path):
    points = [checkpoint(n, 3000 - 0.00002 * n, 500 + 600 * n / 1e6) for n in range(250_000, 6_000_001, 250_000)]
    path = tmp_path / "run.csv"
    write_csv(path, points)
    rows = read_csv(path)
    assert rows[0]["mmap"] is False and rows[0]["index_type"] == "IVF_SQ8"
    summary = summarise(rows)
    assert summary["rss_mib_per_million"] == pytest.approx(600, abs=0.5)
    assert summary["rate_at_start"] == 2980 and summary["rate_at_end"] == 2880
    assert summary["rate_change_pct"] == pytest.approx(-3.4, abs=0.05)
    with pytest.raises(ValueError, match="need checkpoints"):
        summarise(rows[:3])

    plot([path], tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_milvus_work_sums_each_metric_over_its_labels_in_seconds(tmp_path):
    """Milvus reports some latencies in ms and some in s; the checkpoint columns are seconds."""
    text = (
        b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n"
        b"# TYPE milvus_datanode_compaction_latency histogram\n"
        b'milvus_datanode_compaction_latency_bucket{node_id="1",le="+Inf"} 3\n'
        b'milvus_datanode_compaction_latency_sum{node_id="1"} 1500\n'
        b'milvus_datanode_compaction_latency_count{node_id="1"} 3\n'
        b'milvus_datanode_compaction_latency_bucket{node_id="2",le="+Inf"} 1\n'
        b'milvus_datanode_compaction_latency_sum{node_id="2"} 500\n'
        b'milvus_datanode_compaction_latency_count{node_id="2"} 1\n'
        b"# TYPE knowhere_build_latency histogram\n"
        b'knowhere_build_latency_bucket{le="+Inf"} 2\nknowhere_build_latency_sum 30.5\nknowhere_build_latency_count 2\n'
    )

    # Milvus's endpoint answers with this text; a file URL serves it to the same urlopen, with no server.
    metrics = tmp_path / "metrics"
    metrics.write_bytes(text)
    work = milvus_work(metrics.as_uri())
    assert work["milvus_cpu_s"] == 12.5
    assert work["compactions"] == 4 and work["compaction_s"] == pytest.approx(2.0)
    assert work["index_builds"] == 2 and work["index_build_s"] == 30.5
    assert work["segment_loads"] == 0  # absent from this Milvus's output: nothing done
