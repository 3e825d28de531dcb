"""How the face store behaves as it grows: insert rate, memory, disk, latency and recall up to 6M faces.

Synthetic 512-d unit vectors shaped like face embeddings (many identities, each a tight
cluster of 1-6 photos, on a low-dimensional manifold as real embeddings are) stream into a
collection with the face schema, through the pipeline's own writer (``stores/writer.py``:
~2 MB requests, a few in flight, no flush per batch). Every ``--checkpoint`` rows it
records, one CSV row each:

* the insert rate over the last interval (wall clock, rows generated and acknowledged, and
  every sealed segment indexed: the writer pauses for Milvus's index backlog as the pipeline
  does, and each checkpoint waits for the rest, so the rate is one indexing sustains);
* the Milvus process's resident memory (all of it; anonymous and file-backed apart; its
  etcd is embedded in it), MinIO's resident memory, and disk used (Milvus's local data
  with etcd and the message log; MinIO's data, which holds Milvus's segments and indexes);
* the index state (rows indexed, sealed and growing segments);
* search latency p50/p99 at top-10 for nq=1 and nq=32 (Bounded consistency: the index's
  cost, not the wait for the newest writes), with writes paused and every sealed segment
  searched through its index;
* recall@10 against exact search on a held set of queries (Strong consistency: everything
  written so far), the exact top-10 kept up to date as the vectors are generated, and the
  share of a queried person's own photos found in the top-10 (what a reviewer needs).

Run on the local stack (``mimamori stack up``), one index per run:

    .venv/bin/python bench/scale.py --index IVF_SQ8 --target 6000000 --checkpoint 500000 \
        --max-unindexed-rows 150000 --csv docs/scale/ivf_sq8-mmap-6m.csv
    .venv/bin/python bench/scale.py --plot docs/scale/ivf_sq8*.csv --out docs/scale.png

The local stack memory-maps loaded fields (``queryNode.mmapDirPath``); to measure without,
restart it with ``MIMAMORI_STACK__MILVUS__MMAP=false`` (see ``docs/scale.md``). The run reads
the live server's config and records whether mmap was on.
Results and the choice they led to: ``docs/scale.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimamori.core.config import IndexConfig, Settings, load_settings
from mimamori.models.registry import embedder_spec
from mimamori.stores.writer import DEFAULT_IN_FLIGHT, DEFAULT_REQUEST_BYTES, IndexGate, MilvusWriter

MODEL = "facenet-vggface2"  # the production embedder: 512-d
PLATFORMS = ("x", "reddit", "telegram", "forum", "tube", "imageboard")
# Index parameters per type: build and search. IVF: 256 lists per ~145k-row sealed segment,
# not Milvus's rule of thumb of 4*sqrt(rows) (~1,500): k-means over 1,024 lists took ~75 s of
# CPU per segment here, a quarter of the insert budget (docs/scale.md); 16 probes of 256 lists
# scan the same share of a segment as 64 of 1,024.
INDEXES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 64}),
    "IVF_FLAT": ({"nlist": 256}, {"nprobe": 16}),
    "IVF_SQ8": ({"nlist": 256}, {"nprobe": 16}),
    "IVF_PQ": ({"nlist": 256, "m": 64, "nbits": 8}, {"nprobe": 16}),
}


# --- the vectors -------------------------------------------------------------------------------

@dataclass
class FaceLikeVectors:
    """Identities as points on a ``manifold``-dimensional subspace; photos as noisy copies of them.

    With these defaults two photos of one person have cosine ~0.75 and two people ~0 +- 0.12,
    the shape of FaceNet's genuine and impostor distributions.
    """

    dim: int = 512
    manifold: int = 64
    photo_noise: float = 0.57
    max_photos: int = 6
    seed: int = 7
    rng: np.random.Generator = field(init=False)
    basis: np.ndarray = field(init=False)
    next_identity: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        q, _ = np.linalg.qr(self.rng.standard_normal((self.dim, self.manifold)))
        self.basis = q.astype(np.float32)

    def identities(self, n: int) -> np.ndarray:
        centres = self.rng.standard_normal((n, self.manifold), dtype=np.float32) @ self.basis.T
        centres += 0.25 * self.rng.standard_normal((n, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        return _normalise(centres)

    def photos_of(self, centres: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal(centres.shape, dtype=np.float32) * (self.photo_noise / np.sqrt(self.dim))
        return _normalise(centres + noise)

    def batch(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """About ``rows`` photos of new identities: (vectors, identity number, identity centres)."""
        counts = self.rng.integers(1, self.max_photos + 1, size=max(1, rows * 2 // (self.max_photos + 1)))
        counts = counts[: np.searchsorted(np.cumsum(counts), rows, side="right") + 1]
        centres = self.identities(len(counts))
        owner = np.repeat(np.arange(len(counts)), counts)[:rows]
        ids = self.next_identity + owner
        self.next_identity += len(counts)
        return self.photos_of(centres[owner]), ids, centres


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class ExactTopK:
    """The exact top-k inner products of fixed queries over every vector seen so far."""

    queries: np.ndarray
    k: int = 10
    scores: np.ndarray = field(init=False)
    ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.scores = np.full((len(self.queries), self.k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(self.queries), self.k), -1, dtype=np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        scores = np.concatenate([self.scores, self.queries @ vectors.T], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        best = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.ids = np.take_along_axis(all_ids, best, axis=1)


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    """Mean share of the exact top-k among the ids found."""
    shares = [len(set(hits) & set(row.tolist())) / len(row) for hits, row in zip(found, truth, strict=True)]
    return float(np.mean(shares))


def face_ids(start: int, count: int) -> np.ndarray:
    """Deterministic primary keys: a rerun upserts the same rows instead of adding new ones."""
    return np.arange(start, start + count, dtype=np.int64) * 2654435761 % (2**62) + 1


def face_rows(ids: np.ndarray, vectors: np.ndarray, rng: np.random.Generator, model_version: str) -> Iterator[dict]:
    """Rows with the pipeline's schema and realistic scalar fields."""
    now = int(time.time())
    platforms = rng.integers(0, len(PLATFORMS), size=len(ids))
    posted = now - rng.integers(0, 3 * 365 * 86400, size=len(ids))
    boxes = rng.uniform(0, 900, size=(len(ids), 2))
    sizes = rng.uniform(24, 400, size=len(ids))
    scores = rng.uniform(0.95, 1.0, size=len(ids))
    for i, key in enumerate(ids.tolist()):
        sha = hashlib.sha256(key.to_bytes(8, "little")).hexdigest()
        platform = PLATFORMS[platforms[i]]
        x1, y1, size = float(boxes[i, 0]), float(boxes[i, 1]), float(sizes[i])
        yield {
            "face_id": key,
            "embedding": vectors[i],
            "media_sha256": sha,
            "frame_ms": 0,
            "face_index": 0,
            "source_url": f"https://{platform}.example/media/{sha[:16]}.jpg",
            "platform": platform,
            "posted_at": int(posted[i]),
            "indexed_at": now,
            "box": {"x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x1 + size, 1), "y2": round(y1 + size, 1)},
            "det_score": float(scores[i]),
            "quality": float(min(1.0, size / 160)),
            "model_version": model_version,
            "crop_key": f"{MODEL}/{sha[:2]}/{sha}/0-0.jpg",
        }


# --- what the server uses ----------------------------------------------------------------------

def process_memory(pid: int) -> dict[str, float]:
    """Resident memory of a process in MiB: total, anonymous, file-backed, and its peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def disk_mib(path: Path) -> float:
    """Bytes allocated under ``path`` (like ``du``), in MiB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a segment file compacted away meanwhile
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


def wait_for_index(backlog: IndexGate, poll_s: float = 2.0) -> None:
    """Until every sealed segment is indexed and loaded with its index: searches then measure the index."""
    from pymilvus import utility

    collection = backlog.collection
    while True:
        unindexed = backlog.unindexed_rows()
        segments = utility.get_query_segment_info(collection.name, using=collection._using)
        raw = [s for s in segments if s.state == 3 and not s.index_name]  # sealed, loaded without index
        if not unindexed and not raw:
            return
        time.sleep(poll_s)


def latencies_ms(collection, queries: np.ndarray, nq: int, requests: int, params: dict[str, Any]) -> list[float]:
    times = []
    for r in range(requests):
        batch = queries[(np.arange(nq) + r * nq) % len(queries)]
        began = time.perf_counter()
        collection.search(batch.tolist(), "embedding", params, limit=10, consistency_level="Bounded")
        times.append((time.perf_counter() - began) * 1000)
    return times


# Checkpoint column -> (Milvus metric sample, scale to seconds): what Milvus spent its time on.
MILVUS_WORK = {
    "milvus_cpu_s": ("process_cpu_seconds_total", 1.0),
    "index_builds": ("knowhere_build_latency_count", 1.0),
    "index_build_s": ("knowhere_build_latency_sum", 1.0),  # seconds
    "compactions": ("milvus_datanode_compaction_latency_count", 1.0),
    "compaction_s": ("milvus_datanode_compaction_latency_sum", 1e-3),  # milliseconds
    "segment_loads": ("milvus_querynode_load_segment_latency_count", 1.0),
    "segment_load_s": ("milvus_querynode_load_segment_latency_sum", 1e-3),
    "querynode_insert_delete_s": ("milvus_querynode_process_insert_or_delete_latency_sum", 1e-3),
}


def milvus_work(metrics_url: str) -> dict[str, float]:
    """Totals so far of ``MILVUS_WORK`` from Milvus's Prometheus endpoint (summed over labels)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return {column: totals.get(name, 0.0) * scale for column, (name, scale) in MILVUS_WORK.items()}


def percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


@dataclass
class Checkpoint:
    index_type: str
    mmap: bool
    rows: int
    interval_rows: int
    interval_s: float
    insert_rows_per_s: float
    index_wait_s: float
    milvus_rss_mib: float
    milvus_anon_mib: float
    milvus_file_mib: float
    milvus_peak_mib: float
    minio_rss_mib: float
    etcd_disk_mib: float
    milvus_local_disk_mib: float
    minio_disk_mib: float
    indexed_rows: int
    sealed_segments: int
    growing_segments: int
    nq1_p50_ms: float
    nq1_p99_ms: float
    nq32_p50_ms: float
    nq32_p99_ms: float
    recall_at_10: float
    own_photos_found: float
    elapsed_s: float
    # Where the interval's CPU went (deltas since the last checkpoint; searches included):
    bench_cpu_s: float = 0.0  # this process: generating rows and packing requests (pymilvus)
    milvus_cpu_s: float = 0.0
    index_builds: float = 0.0  # Milvus's own metrics from here on (MILVUS_WORK)
    index_build_s: float = 0.0
    compactions: float = 0.0
    compaction_s: float = 0.0
    segment_loads: float = 0.0
    segment_load_s: float = 0.0
    querynode_insert_delete_s: float = 0.0


# --- the run ------------------------------------------------------------------------------------

def bench_settings(settings: Settings, index_type: str) -> Settings:
    build, search = INDEXES[index_type]
    index = IndexConfig(index_type=index_type, metric_type="IP", params=build, search_params=search)
    milvus = settings.milvus.model_copy(update={"index": index})
    return settings.model_copy(update={"milvus": milvus})


def run(args: argparse.Namespace) -> list[Checkpoint]:
    from pymilvus import utility

    from mimamori.stack.stack import Stack
    from mimamori.stores.faces import ensure_face_collection
    from mimamori.stores.milvus import connect

    settings = bench_settings(load_settings(), args.index)
    stack = Stack(settings)
    milvus_pid, minio_pid = stack.milvus.process("milvus").pid(), stack.minio.process("minio").pid()
    if not milvus_pid or not minio_pid:
        sys.exit("the local stack is not running: start it with `mimamori stack up`")
    live_config = yaml.safe_load(stack.milvus.config_file.read_text())
    mmap_dir = (live_config.get("queryNode") or {}).get("mmapDirPath") or ""
    name = f"scale_{args.index.lower()}{'_mmap' if mmap_dir else ''}"
    alias = connect(settings)
    if utility.has_collection(name, using=alias):
        utility.drop_collection(name, using=alias)  # recall needs to know every row: start empty
    collection = ensure_face_collection(settings, MODEL, collection_name=name)
    bound = settings.milvus.max_unindexed_rows if args.max_unindexed_rows is None else args.max_unindexed_rows or None
    writer = MilvusWriter(collection, args.request_bytes, args.in_flight, max_unindexed_rows=bound)
    backlog = IndexGate(collection, max_unindexed_rows=0)  # read at checkpoints, to let indexing catch up
    model_version = embedder_spec(MODEL).version
    search_params = {"metric_type": "IP", "params": INDEXES[args.index][1]}

    generator = FaceLikeVectors(seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    first_vectors, first_owner, first_centres = generator.batch(args.chunk)
    asked = rng.choice(len(first_centres), size=args.queries, replace=False)
    queries = generator.photos_of(first_centres[asked])  # new photos of people already stored
    truth = ExactTopK(queries)
    own_photos: dict[int, set[int]] = {}  # query -> ids of that person's stored photos

    metrics_url = f"http://127.0.0.1:{settings.stack.milvus.health_port}/metrics"
    work_mark, cpu_mark = milvus_work(metrics_url), time.process_time()
    started = time.perf_counter()
    mark, inserted, marked_rows = started, 0, 0
    checkpoints: list[Checkpoint] = []
    pending = (first_vectors, first_owner)
    while inserted < args.target:
        vectors, owner = pending if pending is not None else generator.batch(args.chunk)[:2]
        pending = None
        take = min(len(vectors), args.target - inserted, args.checkpoint - inserted % args.checkpoint)
        vectors, owner = vectors[:take], owner[:take]
        ids = face_ids(inserted, take)
        if inserted == 0:
            for q, person in enumerate(asked.tolist()):
                own_photos[q] = set(ids[owner == person].tolist())
        truth.add(vectors, ids)
        writer.write(face_rows(ids, vectors, rng, model_version))
        inserted += take
        if inserted % args.checkpoint and inserted < args.target:
            continue
        writer.wait()
        wait_for_index(backlog)  # the backlog's indexing is this interval's work too
        interval_s = time.perf_counter() - mark
        point = measure(args, stack, collection, name, search_params, queries, truth, own_photos,
                        milvus_pid, minio_pid, bool(mmap_dir))
        point.rows, point.interval_rows, point.interval_s = inserted, inserted - marked_rows, round(interval_s, 1)
        point.insert_rows_per_s = round((inserted - marked_rows) / interval_s, 1)
        point.elapsed_s = round(time.perf_counter() - started, 1)
        point.index_wait_s = round(writer.index_gate.waited_s if writer.index_gate else 0.0, 1)
        work, cpu = milvus_work(metrics_url), time.process_time()
        for column, total in work.items():
            setattr(point, column, round(total - work_mark[column], 1))
        point.bench_cpu_s = round(cpu - cpu_mark, 1)
        work_mark, cpu_mark = work, cpu
        checkpoints.append(point)
        write_csv(args.csv, checkpoints)
        print(f"{inserted:>9,} rows  {point.insert_rows_per_s:8.0f} rows/s  rss {point.milvus_rss_mib:7.0f} MiB"
              f"  (anon {point.milvus_anon_mib:.0f})  indexed {point.indexed_rows:,}"
              f"  p99 nq1 {point.nq1_p99_ms} ms  nq32 {point.nq32_p99_ms} ms  recall@10 {point.recall_at_10}"
              f"  cpu: milvus {point.milvus_cpu_s} s, bench {point.bench_cpu_s} s, index builds "
              f"{point.index_builds:.0f} ({point.index_build_s} s), compactions {point.compactions:.0f}",
              flush=True)
        mark, marked_rows = time.perf_counter(), inserted
    writer.close(flush=False)
    return checkpoints


def measure(args, stack, collection, name, search_params, queries, truth, own_photos,
            milvus_pid, minio_pid, mmap) -> Checkpoint:
    from pymilvus import utility

    memory, minio_memory = process_memory(milvus_pid), process_memory(minio_pid)
    data = stack.milvus.data_dir
    alias = collection._using  # the connection the collection was opened on
    progress = utility.index_building_progress(name, index_name="embedding", using=alias)
    segments = utility.get_query_segment_info(name, using=alias)
    sealed = sum(1 for s in segments if s.state == 3)  # SegmentState.Sealed
    nq1 = latencies_ms(collection, queries, 1, args.latency_requests, search_params)
    nq32 = latencies_ms(collection, queries, 32, max(10, args.latency_requests // 5), search_params)
    results = collection.search(queries.tolist(), "embedding", search_params, limit=10, consistency_level="Strong")
    found = [list(hits.ids) for hits in results]
    own = [len(own_photos[q] & set(hits)) / min(10, len(own_photos[q])) for q, hits in enumerate(found)]
    return Checkpoint(
        index_type=args.index, mmap=mmap, rows=0, interval_rows=0, interval_s=0.0,
        insert_rows_per_s=0.0, index_wait_s=0.0,
        milvus_rss_mib=round(memory["VmRSS"]), milvus_anon_mib=round(memory["RssAnon"]),
        milvus_file_mib=round(memory["RssFile"]), milvus_peak_mib=round(memory["VmHWM"]),
        minio_rss_mib=round(minio_memory["VmRSS"]), etcd_disk_mib=round(disk_mib(data / "etcd.data"), 1),
        milvus_local_disk_mib=round(disk_mib(data)),
        minio_disk_mib=round(disk_mib(stack.minio.data_dir)),
        indexed_rows=int(progress.get("indexed_rows", 0)), sealed_segments=sealed,
        growing_segments=len(segments) - sealed,
        nq1_p50_ms=percentile(nq1, 50), nq1_p99_ms=percentile(nq1, 99),
        nq32_p50_ms=percentile(nq32, 50), nq32_p99_ms=percentile(nq32, 99),
        recall_at_10=round(recall_at_k(found, truth.ids), 4), own_photos_found=round(float(np.mean(own)), 4),
        elapsed_s=0.0)


# --- results ------------------------------------------------------------------------------------

def write_csv(path: Path, checkpoints: Sequence[Checkpoint]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=list(asdict(checkpoints[0])))
        out.writeheader()
        out.writerows(asdict(point) for point in checkpoints)


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [{k: (v if k == "index_type" else v == "True" if k == "mmap" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def summarise(rows: Sequence[dict[str, Any]], since: int = 1_000_000) -> dict[str, float]:
    """Growth from ``since`` rows to the last checkpoint: memory per million, the insert rate's change.

    The rate is fitted by least squares over the checkpoints (a single interval on a shared
    machine is noisy); its change is the fit at the end against the fit at ``since``.
    """
    after = [r for r in rows if r["rows"] >= since]
    if len(after) < 2:
        raise ValueError(f"need checkpoints at and after {since:,} rows")
    size = np.array([r["rows"] for r in after]) / 1e6
    slope_rss = np.polyfit(size, [r["milvus_rss_mib"] for r in after], 1)[0]
    slope_anon = np.polyfit(size, [r["milvus_anon_mib"] for r in after], 1)[0]
    rate_fit = np.polyfit(size, [r["insert_rows_per_s"] for r in after], 1)
    start_rate, end_rate = np.polyval(rate_fit, size[0]), np.polyval(rate_fit, size[-1])
    last = rows[-1]
    return {
        "rows": last["rows"], "rss_mib_per_million": round(float(slope_rss), 1),
        "anon_mib_per_million": round(float(slope_anon), 1),
        "rate_at_start": round(float(start_rate)), "rate_at_end": round(float(end_rate)),
        "rate_change_pct": round(float(100 * (end_rate - start_rate) / start_rate), 1),
        "nq1_p99_ms": last["nq1_p99_ms"], "nq32_p99_ms": last["nq32_p99_ms"],
        "recall_at_10": last["recall_at_10"], "own_photos_found": last["own_photos_found"],
        "milvus_rss_mib": last["milvus_rss_mib"], "disk_mib": last["milvus_local_disk_mib"] + last["minio_disk_mib"],
    }


def label(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    """The run's index (and mmap), and its CSV's name: runs of one index differ in server settings."""
    return rows[0]["index_type"] + (" + mmap" if rows[0]["mmap"] else "") + f" ({path.stem})"


def plot(paths: Sequence[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("insert_rows_per_s", "insert rate (rows/s)"), ("milvus_rss_mib", "Milvus resident memory (MiB)"),
              ("milvus_anon_mib", "of which anonymous (MiB)"), ("nq1_p99_ms", "search p99, nq=1, top-10 (ms)")]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for path in paths:
        rows = read_csv(path)
        size = [r["rows"] / 1e6 for r in rows]
        for axis, (column, _title) in zip(axes.flat, panels, strict=True):
            axis.plot(size, [r[column] for r in rows], marker=".", label=label(path, rows))
    for axis, (_column, title) in zip(axes.flat, panels, strict=True):
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    for axis in axes[1]:
        axis.set_xlabel("faces in the collection (millions)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    figure.suptitle("mimamori face store on the local stack (Milvus 2.3.5, 2 cores, 24 GB)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", choices=sorted(INDEXES), default="IVF_SQ8")
    parser.add_argument("--target", type=int, default=1_000_000, help="faces to insert (6000000 for the full run)")
    parser.add_argument("--checkpoint", type=int, default=250_000, help="measure every this many faces")
    parser.add_argument("--chunk", type=int, default=5_000, help="faces generated at a time")
    parser.add_argument("--queries", type=int, default=100, help="held queries for recall")
    parser.add_argument("--latency-requests", type=int, default=100, help="nq=1 searches per checkpoint")
    parser.add_argument("--request-bytes", type=int, default=DEFAULT_REQUEST_BYTES)
    parser.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT)
    parser.add_argument("--max-unindexed-rows", type=int,
                        help="pause writes while more rows wait for their index (default: the profile's; 0: never)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--csv", type=Path, help="where the checkpoints go (default docs/scale/<index>.csv)")
    parser.add_argument("--plot", type=Path, nargs="+", metavar="CSV", help="plot these runs instead of running")
    parser.add_argument("--out", type=Path, default=Path("docs/scale.png"), help="the plot's file")
    args = parser.parse_args(argv)
    if args.plot:
        plot(args.plot, args.out)
        for path in args.plot:
            rows = read_csv(path)
            try:
                print(label(path, rows), summarise(rows))
            except ValueError as error:  # stopped too early for a fit
                print(label(path, rows), f"({error})")
        return 0
    if args.chunk > args.checkpoint:
        parser.error("--chunk must not exceed --checkpoint")
    args.csv = args.csv or Path("docs/scale") / f"{args.index.lower()}.csv"
    checkpoints = run(args)
    print(f"wrote {args.csv} ({len(checkpoints)} checkpoints)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
