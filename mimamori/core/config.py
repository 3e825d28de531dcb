"""The one typed configuration of mimamori.

Every endpoint, credential location, topic, bucket, collection, index parameter and
model path lives here, so no other module hard-codes a host or a port.

Values are layered, later wins:

1. the defaults in the classes below;
2. the profile file ``mimamori/profiles/<profile>.yaml`` (``local`` or ``production``);
3. an optional site file named by ``MIMAMORI_CONFIG``;
4. environment variables ``MIMAMORI_<SECTION>__<FIELD>``, e.g.
   ``MIMAMORI_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``.

The profile is chosen by ``MIMAMORI_PROFILE`` (default ``local``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mimamori.core.errors import InvalidInput

PROFILES_DIR = Path(__file__).parent / "profiles"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout (mimamori/core/config.py)


def default_stack_home() -> Path:
    """Where the local stack keeps its data: ``.stack/`` in a source checkout, else ``~/.mimamori``."""
    if (SOURCE_ROOT / "setup.py").exists():
        return SOURCE_ROOT / ".stack"
    return Path.home() / ".mimamori"


def default_cache_dir() -> Path:
    """Downloads and builds shared by every checkout on this machine (jars, Go binaries)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mimamori"


class Section(BaseModel):
    """A section of the configuration: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class TopicConfig(Section):
    name: str
    partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000


class TopicsConfig(Section):
    media_scraped: TopicConfig = TopicConfig(name="media.scraped", partitions=6)
    faces_indexed: TopicConfig = TopicConfig(name="faces.indexed", partitions=3)
    media_dlq: TopicConfig = TopicConfig(name="media.dlq", partitions=1, retention_ms=30 * 24 * 3600 * 1000)
    matches: TopicConfig = TopicConfig(name="matches", partitions=1, retention_ms=30 * 24 * 3600 * 1000)

    def all(self) -> list[TopicConfig]:
        return [self.media_scraped, self.faces_indexed, self.media_dlq, self.matches]


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: str | None = None
    # A client certificate and key (PEM) for brokers that authenticate clients by TLS (mutual TLS).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # AWS_MSK_IAM (Amazon MSK with IAM auth, SASL_SSL; needs the ``aws`` extra, botocore) or any
    # mechanism kafka-python supports.
    sasl_mechanism: str | None = None
    consumer_group: str = "mimamori-pipeline"
    topics: TopicsConfig = TopicsConfig()

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, option):
                options[option] = getattr(self, option)
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
        return options


class BucketConfig(Section):
    name: str
    # Objects older than this are deleted by a MinIO/S3 lifecycle rule; None keeps them.
    expire_days: int | None = None


class BucketsConfig(Section):
    media: BucketConfig = BucketConfig(name="mimamori-media", expire_days=90)
    crops: BucketConfig = BucketConfig(name="mimamori-crops")
    milvus: BucketConfig = BucketConfig(name="mimamori-milvus")
    # Clients' reference photos and their aligned face crops: deleted with the case, never expired.
    references: BucketConfig = BucketConfig(name="mimamori-references")

    def all(self) -> list[BucketConfig]:
        return [self.media, self.crops, self.milvus, self.references]


class MinioConfig(Section):
    endpoint: str = "127.0.0.1:9000"
    secure: bool = False
    region: str = "us-east-1"
    # Where credentials come from: "file" (JSON {"access_key": ..., "secret_key": ...}; the local
    # stack generates it, mode 0600) or "aws_iam" (S3 on AWS: the pod's IAM role for service
    # accounts, or the instance profile; no keys anywhere).
    credentials_provider: Literal["file", "aws_iam"] = "file"
    credentials_file: Path | None = None
    buckets: BucketsConfig = BucketsConfig()


class IndexConfig(Section):
    """The vector index of the face collection (DISKANN in production)."""

    index_type: str = "IVF_SQ8"
    metric_type: Literal["IP", "L2", "COSINE"] = "IP"
    params: dict[str, Any] = Field(default_factory=lambda: {"nlist": 256})
    search_params: dict[str, Any] = Field(default_factory=lambda: {"nprobe": 16})


class MilvusConfig(Section):
    uri: str = "http://127.0.0.1:19530"
    # Collections of indexed media (per model) and of sightings (where media was seen).
    media_collection_prefix: str = "media"
    sightings_collection: str = "sightings_v1"
    # Milvus's HTTP port with /healthz (behind the local stack's bridge).
    health_url: str = "http://127.0.0.1:9091/healthz"
    token_file: Path | None = None
    database: str = "default"
    collection_prefix: str = "faces"
    # Clients' enrolled reference faces (one collection per model, partitioned by case).
    enrolled_collection_prefix: str = "enrolled"
    schema_version: int = 1
    shards: int = 2
    index: IndexConfig = IndexConfig()
    # Writers pause while more rows than this wait in sealed segments for their vector index
    # (docs/scale.md): inserts then run at the rate indexing sustains. null: never pause.
    max_unindexed_rows: int | None = 300_000
    # The most the clock of a host that writes reference hashes or enrolled faces (the API, the
    # CLI) may lag Milvus's: added to the moment a search must see writes up to (the references'
    # hashes_written_at, the cases' faces_written_at; stores/milvus.seen_writes).
    clock_skew_s: float = Field(default=1.0, ge=0.0, le=60.0)


class EmbedderConfig(Section):
    # A name from models/registry.py. dlib-resnet's weights ship in a package; FaceNet's
    # come from weights_path.
    name: str = "dlib-resnet"
    weights_path: Path | None = None
    # Only tests may run an embedder without real weights; production refuses to start.
    allow_random_weights: bool = False


# Issue 20 (M2): what the detector tries on a frame in which it found no face.
class DetectionFallbacksConfig(Section):
    # Frames whose longer side is under this many pixels (thumbnails) are detected again
    # upscaled to it; 0 turns it off. MTCNN's pyramid starts at 20-pixel faces.
    upscale_below: int = 0
    # Quarter turns (clockwise degrees) tried, all in one detector call, on a frame with no
    # face: a re-upload turned on its side, with no orientation tag. Empty turns it off.
    rotations: tuple[int, ...] = ()


class DetectorConfig(Section):
    # Pixels on the shorter side of the box. Re-uploads are often thumbnails and screenshots:
    # dlib's descriptors still match faces of 17-23 px (docs/quality.md), so keep them; the
    # quality score stored with each face records the size for searches that want more.
    min_face_size: int = 16
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_confidence: float = 0.95  # MTCNN's score
    # YuNet's score (models with detector "yunet"; its scale is not MTCNN's: models/yunet.py).
    yunet_score_threshold: float = 0.6
    max_faces_per_image: int = 64
    # Which MTCNN computes the detections: facenet-pytorch's own ("facenet"), or the same
    # network, weights and outputs computed in fewer, larger operations (models/fast_mtcnn.py;
    # parity within 1e-3 px and 1e-6 in score, tests/unit/test_fast_mtcnn.py). Not a model
    # version change: both give the same faces (docs/models.md).
    implementation: Literal["facenet", "fast"] = "fast"
    fallbacks: DetectionFallbacksConfig = DetectionFallbacksConfig()  # issue 20, docs/matching.md


class ModelsConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    detector: DetectorConfig = DetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()


class KafkaStackConfig(Section):
    version: str = "3.9.1"
    controller_port: int = 9093
    heap: str = "512m"


class MinioStackConfig(Section):
    # Go module version of github.com/minio/minio (a pseudo-version: MinIO tags are not semver).
    version: str = "v0.0.0-20260212201848-7aac2a2c5b7c"
    console_address: str = "127.0.0.1:9001"


class MilvusStackConfig(Section):
    health_port: int = 9091
    # Milvus 2.3.5 binds every interface: run it in a network namespace of its own, reached
    # through a loopback bridge (needs root). False runs it plainly, on all interfaces.
    isolate_network: bool = True
    # Loaded segments' raw field data (the scalars; vectors not yet indexed) memory-mapped
    # from files under the data directory (queryNode.mmapDirPath) instead of held in anonymous
    # memory: the page cache keeps what searches touch. The smaller memory slope of the two
    # measured to 6M faces (docs/scale.md). Milvus 2.3.5 cannot map a string column of zero
    # bytes (milvus#31406, fixed in 2.3.12): no string we store is ever "" (stores/writer.py).
    mmap: bool = True
    # A growing segment seals at this share of dataCoord.segment.maxSize (Milvus: 0.23). Full
    # segments are indexed once; early-sealed small ones are indexed, merged and indexed again.
    seal_proportion: float = Field(default=0.9, gt=0, le=1)
    # How many growing segments the data node writes to MinIO at once (dataNode.dataSync.
    # maxParallelSyncTaskNum; Milvus: 6). Every 10 minutes (dataNode.segment.syncPeriod) it syncs
    # all of them; six at once on a small machine gain nothing, and each burst of concurrent
    # writes left MinIO with more OS threads for good (Go keeps a thread per blocking call at the
    # peak): the soak's MinIO threads stepped 17 -> 24 -> 34 at two of those syncs.
    parallel_syncs: int = Field(default=2, ge=1)
    # Settings merged last into the server's milvus.yaml, e.g. {"dataCoord": {"segment": {"maxSize": 1024}}}.
    extra_config: dict[str, Any] = Field(default_factory=dict)


class MonitoringStackConfig(Section):
    # Debian's prometheus package (promtool comes with it), fetched with apt-get download.
    prometheus_version: str = "2.42.0+ds-5+deb12u1"
    prometheus_address: str = "127.0.0.1:9090"
    scrape_interval: str = "5s"
    retention: str = "15d"
    # mimamori's own exporter of state: consumer lag, Milvus entity counts, pending matches.
    exporter_address: str = "127.0.0.1:9309"
    exporter_interval_s: float = 5.0


class StackConfig(Section):
    """The local stack: where it lives and what it installs."""

    home: Path = Field(default_factory=default_stack_home)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    kafka: KafkaStackConfig = KafkaStackConfig()
    minio: MinioStackConfig = MinioStackConfig()
    milvus: MilvusStackConfig = MilvusStackConfig()
    monitoring: MonitoringStackConfig = MonitoringStackConfig()
    start_timeout_s: float = 120.0


class PipelineConfig(Section):
    """Limits that keep hostile or broken media from hurting a worker, and dedupe settings."""

    max_media_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000
    min_side: int = 32
    max_video_frames: int = 32
    video_frame_interval_s: float = 1.0
    # Mean absolute difference (0-255) of two downscaled grey frames that counts as a cut.
    video_scene_change: float = 30.0
    # Records one source bundle reads at most: smaller bundles commit offsets sooner and lower
    # latency; larger ones amortise per-bundle work.
    max_records_per_bundle: int = 100
    # How long one source bundle reads before it hands over (and its offsets can be committed).
    bundle_read_s: float = 2.0
    # pHash (64 bits) Hamming distance up to which media counts as a near duplicate.
    near_duplicate_distance: int = 6
    # Process media again even when it is already indexed under this media id (a replay after a
    # fix of detection or alignment: `mimamori replay --reprocess`). Its faces are rewritten under
    # the same keys, and faces the new run no longer finds are deleted with their crops. Copies
    # under other media ids stay sightings.
    reprocess_indexed: bool = False
    # Seconds between handing the worker's free C heap back to the system (core/native_heap.py):
    # without it a worker's memory stays at the high-water mark of the largest media it saw. 0: never.
    heap_trim_interval_s: float = 30.0
    # Elements of a bundle that fetching and decoding, and dedupe (pHash lookup, PDQ), may work
    # ahead of detection, each in a background thread (transforms/read_ahead.py): their waits and
    # C code overlap detection on another core. Each holds a decoded media item. 0: in line.
    read_ahead: int = Field(default=4, ge=0)


class RunnerConfig(Section):
    default: Literal["prism", "flink", "direct"] = "prism"
    prism_path: Path | None = None
    flink_master: str = "[local]"
    flink_checkpoint_interval_ms: int = 5000
    # A running Beam job server (a Flink cluster's), instead of one started for each run.
    job_endpoint: str | None = None
    # Where the Python workers run: LOOPBACK (in the launching process, local runs) or
    # EXTERNAL with environment_config = a Beam worker pool (localhost:50000 beside each task manager).
    environment_type: Literal["LOOPBACK", "EXTERNAL", "PROCESS", "DOCKER"] = "LOOPBACK"
    environment_config: str | None = None


class DatabaseConfig(Section):
    """The case database: cases, consent, enrolled photos, matches, API keys and the audit log."""

    # A SQLAlchemy URL. Empty: a SQLite file in the stack's home. Production: PostgreSQL
    # (postgresql+psycopg://...), preferably from url_file so the password stays out of config.
    url: str = ""
    url_file: Path | None = None


class ApiConfig(Section):
    bind_address: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = 20 * 1024 * 1024
    # Links to face crops in MinIO expire after this long.
    crop_link_ttl_s: int = 300
    max_top_k: int = 100


class WebConfig(Section):
    """Staff accounts of the workbench: sessions, sign-in throttling, invitations, passwords.

    The organisation's viewing defaults (blur, greyscale, claim and break minutes, language)
    are in the case database, where an admin changes them without a restart.
    """

    # Where staff open the workbench (invitation links); None: http://<api bind_address>:<api port>.
    public_url: str | None = None
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    # No request of a session for this long counts as a break: the break reminder's clock of
    # continuous review starts again at the next page.
    review_pause_minutes: int = Field(default=15, ge=1)
    # Between the password and the TOTP code: a pending session lives this long.
    second_factor_minutes: int = Field(default=5, ge=1)
    invitation_hours: int = Field(default=72, ge=1)
    min_password_length: int = Field(default=12, ge=8)
    # Failed sign-ins (a password or a code) within the window that lock a username, or refuse
    # a client address, for lockout_minutes.
    throttle_window_minutes: int = Field(default=15, ge=1)
    max_failures_per_user: int = Field(default=5, ge=1)
    max_failures_per_client: int = Field(default=20, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    totp_issuer: str = "mimamori"
    # The Prometheus the operations page reads (query_range); None: the local stack's
    # (stack.monitoring.prometheus_address).
    prometheus_url: str | None = None


class WatchlistConfig(Section):
    # Enrolled faces compared with each newly indexed face (top hits per face, over every watched
    # case at once). Large enough that one case with many reference photos cannot crowd another
    # case's hit out; the enrolled collection is small and searched exactly (FLAT), so it is cheap.
    top_k: int = 64


# Issue 19 (T1): takedowns: notices, their sender, re-check and escalation defaults (docs/takedowns.md).
class OrganisationConfig(Section):
    """Who the notices come from: named in every notice, with the mandate the templates state."""

    name: str = "mimamori"
    email: str = "takedowns@example.org"  # the notices' From (and Reply-To)
    website: str | None = None
    postal_address: str | None = None
    # An extra sentence on the organisation's authority to act for its clients (the templates
    # state the authorisation in any case).
    authority: str | None = None


class SmtpConfig(Section):
    """The mail server notices are sent through; ``host`` None turns sending off (.eml and copy still work)."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    # starttls (submission, 587), tls (implicit TLS, 465), none: plain, only to a loopback
    # address and only with allow_plain_loopback (a local relay, the tests' server).
    security: Literal["starttls", "tls", "none"] = "starttls"
    allow_plain_loopback: bool = False
    credentials_file: Path | None = None  # YAML or JSON: {username: ..., password: ...}
    # A CA bundle (PEM) to verify the server's certificate by, for a relay with a private CA;
    # None: the system's trusted CAs. Certificates and host names are always checked.
    ca_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class TakedownsConfig(Section):
    default_recheck_hours: int = Field(default=24, ge=1)  # hosts without their own interval
    default_expected_response_days: int = Field(default=7, ge=1)  # unknown hosts, steps without after_days
    # A DNS failure counts as "gone" only after this many consecutive checks found none.
    dns_failures_for_gone: int = Field(default=3, ge=1)
    # A MaxMind database (GeoLite2-Country or -City .mmdb) the organisation provides: the server
    # country of URLs whose host is not in the directory. None: no GeoIP.
    geoip_database: Path | None = None
    default_language: Literal["en", "ja"] = "en"
    organisation: OrganisationConfig = OrganisationConfig()
    smtp: SmtpConfig = SmtpConfig()


# Issue 19 (T2): the re-check service (`mimamori rechecks serve`), its fetcher's limits (docs/takedowns.md).
class RechecksConfig(Section):
    # How often the service looks for due re-checks (each takedown's own interval, daily by
    # default, is takedowns.default_recheck_hours or its host's recheck_hours).
    poll_interval_s: float = Field(default=300.0, gt=0)
    workers: int = Field(default=16, ge=1)  # fetches at once
    per_host: int = Field(default=2, ge=1)  # fetches at once on one host
    batch: int = Field(default=200, ge=1)  # due takedowns read at a time
    max_images: int = Field(default=12, ge=0)  # images of one page compared
    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)  # one answer's body, cut beyond
    timeout_s: float = Field(default=30.0, gt=0)  # one fetch, redirects included
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    user_agent: str = "mimamori-recheck/1.0 (takedown verification)"
    # An HTTP proxy for every fetch (http://host:port). The proxy then resolves names and
    # connects: it must enforce the egress policy itself (public addresses only).
    proxy: str | None = None
    # Networks fetched although not public. Only tests set it, for their local server; never
    # the metadata addresses.
    allow_networks: list[str] = Field(default_factory=list)
    phash_distance: int = Field(default=8, ge=0, le=64)  # still up: pHash within this many bits
    pdq_distance: int = Field(default=31, ge=0, le=256)  # still up: PDQ within this many bits
    # Where the service serves its metrics; None: the exporter's host, its port + 1 (9310).
    metrics_address: str | None = None

    def metrics_bind(self, exporter_address: str) -> tuple[str, int]:
        host, _, port = (self.metrics_address or exporter_address).rpartition(":")
        return host, int(port) + (0 if self.metrics_address else 1)


# Issue 22 (R2): `mimamori backup`: what cannot be recomputed, sealed, to a directory or a bucket (docs/operations.md).
class BackupConfig(Section):
    # A local directory, or s3://BUCKET/PREFIX on the object store of ``s3`` (default: ``minio``'s).
    # Empty: <stack home>/backups, which a lost disk takes with it: set it for any real use.
    destination: str = ""
    # The AES-256 key (base64, 32 bytes; mode 0600): `mimamori backup key FILE` makes one. Keep a
    # copy off the machine: without it no backup opens.
    key_file: Path | None = None
    # Backups older than this are deleted by `backup create` and `backup prune`: also how long a
    # withdrawn case can survive in a backup (docs/operations.md, "Backup and restore").
    retention_days: int = Field(default=30, ge=1)
    # Milvus collections backed up, as fnmatch patterns; {SECTION.FIELD} is that setting, e.g.
    # {milvus.collection_prefix}. The enrolled faces and the cases' reference hashes cannot be
    # recomputed without the clients; the face and PDQ indexes, media and sightings could be by a
    # replay, but only while Kafka and the media bucket still hold the media (7 and 90 days):
    # they are in by default; remove them where a replay will do.
    collections: list[str] = Field(default_factory=lambda: [
        "{milvus.enrolled_collection_prefix}_*", "{matching.reference_collection}",
        "{milvus.collection_prefix}_*", "{milvus.media_collection_prefix}_*", "{milvus.sightings_collection}",
        "{matching.pdq_collection}"])
    # Buckets backed up, by their name under ``minio.buckets`` (the media bucket expires anyway).
    buckets: list[str] = Field(default_factory=lambda: ["crops", "references"])
    # Bytes sealed per authenticated chunk.
    chunk_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    # The object store of an s3:// destination, when it is not the data's own.
    s3: MinioConfig | None = None


# Issue 20 (M1): image hashes and reference media (docs/matching.md).
class MatchingConfig(Section):
    # Milvus collections of PDQ hashes (binary vectors, Hamming): scraped media, one row per frame;
    # and the cases' reference hashes (eight dihedral variants per reference frame, imported lists),
    # one partition per case. One collection per hash kind, as the face ones are one per model.
    pdq_collection: str = "pdq_media_v1"
    reference_collection: str = "pdq_references_v1"
    # A scraped frame matches a reference hash within this many bits (HMA's default 31) when both
    # hashes have at least this PDQ quality (below 50 an image is too flat to tell apart).
    pdq_max_distance: int = Field(default=31, ge=0, le=128)
    pdq_min_quality: int = Field(default=50, ge=0, le=100)
    # Scraped pictures are PDQ-hashed from a copy scaled to fit this side (Meta's C++ tool scales to
    # 512): about four times cheaper for 2-4 megapixel photos, about 4 bits from the full picture's
    # hash; 512 is ten times cheaper but 10 bits off (docs/matching.md, bench/pdq_scale.py). 0: the
    # full picture, equal to HMA's hash. Reference hashes are always of the full picture.
    scraped_pdq_max_side: int = Field(default=1024, ge=0)
    # The scraped collection's index: BIN_IVF_FLAT (Milvus 2.3.5 has BIN_FLAT and BIN_IVF_FLAT for
    # binary vectors); the reference collection is small and searched exactly (BIN_FLAT).
    pdq_nlist: int = Field(default=1024, ge=1)
    pdq_nprobe: int = Field(default=64, ge=1)
    # Nearest reference hashes taken per scraped frame (over every watched case at once).
    top_k: int = Field(default=64, ge=1, le=16384)
    # The reviewer's small thumbnail of a reference image: longest side and blur (pixels at 256 px).
    reference_thumbnail_px: int = Field(default=128, ge=32, le=512)
    reference_thumbnail_blur: int = Field(default=12, ge=0)
    # The crop-robust signal (mimamori.media.local_features): a scraped image matches a reference
    # image when one similarity transform explains at least ``local_min_inliers`` of their ORB
    # keypoint matches. Off by default: a reference that itself carries an overlay (a site's
    # watermark, meme captions) matches unrelated pictures with the same overlay (docs/quality.md,
    # "Local features and shared overlays"). Off, no keypoints are kept either: they are partly
    # invertible to a rough picture, so they are kept only where they are used.
    local_features: bool = False
    # Not under the 6 matches a reference needs before it is verified (local_features.LEAST_MATCHES).
    local_min_inliers: int = Field(default=6, ge=6, le=500)


# Issue 20 (M3): the per-case model that learns from reviewers (docs/matching.md, "Per-case model").
class CaseModelsConfig(Section):
    enabled: bool = True  # train, store and apply per-case heads; false: the base similarity alone
    # Nearest indexed faces (not matches of the case) taken as hard negatives: every other one
    # trains the head, the rest calibrate its effective threshold.
    hard_negatives: int = Field(default=400, ge=2, le=16384)
    # Retrain a case's head after this many new reviewer decisions (confirmed or rejected) since its
    # last training; 1: after every decision (one Milvus query and milliseconds of numpy).
    retrain_after: int = Field(default=1, ge=1)
    # How far under the case threshold the head may accept a face, and how far above every held-out
    # negative and rejected face its effective threshold stays (cosine units; bench/case_model.py).
    max_lowering: float = Field(default=0.02, ge=0.0, le=0.2)
    margin: float = Field(default=0.03, ge=0.0, le=0.2)


class MetricsConfig(Section):
    # Each pipeline worker serves Prometheus metrics on this port (0 picks a free one).
    port: int = 0
    bind_address: str = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIMAMORI_", env_nested_delimiter="__", extra="forbid")

    profile: Literal["local", "production"] = "local"
    kafka: KafkaConfig = KafkaConfig()
    minio: MinioConfig = MinioConfig()
    milvus: MilvusConfig = MilvusConfig()
    models: ModelsConfig = ModelsConfig()
    stack: StackConfig = StackConfig()
    pipeline: PipelineConfig = PipelineConfig()
    runner: RunnerConfig = RunnerConfig()
    metrics: MetricsConfig = MetricsConfig()
    database: DatabaseConfig = DatabaseConfig()
    api: ApiConfig = ApiConfig()
    watchlist: WatchlistConfig = WatchlistConfig()
    web: WebConfig = WebConfig()
    matching: MatchingConfig = MatchingConfig()  # issue 20 (M1)
    case_models: CaseModelsConfig = CaseModelsConfig()  # issue 20 (M3)
    takedowns: TakedownsConfig = TakedownsConfig()  # issue 19
    rechecks: RechecksConfig = RechecksConfig()  # issue 19 (T2)
    backup: BackupConfig = BackupConfig()  # issue 22 (R2)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the init arguments, which carry the merged YAML files.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        if self.minio.credentials_file is None:
            self.minio.credentials_file = self.stack.home / "minio" / "credentials.json"
        return self

    def namespaced(self, tag: str) -> Settings:
        """A copy whose topics, consumer group, collections and buckets all carry ``tag``.

        Tests and benchmarks run beside real data on one stack without touching it.
        """
        copy = self.model_copy(deep=True)
        for topic in copy.kafka.topics.all():
            topic.name = f"{tag}.{topic.name}"
        copy.kafka.consumer_group = f"{tag}-{copy.kafka.consumer_group}"
        prefix = tag.replace("-", "_").replace(".", "_")
        copy.milvus.collection_prefix = f"{prefix}_{copy.milvus.collection_prefix}"
        copy.milvus.media_collection_prefix = f"{prefix}_{copy.milvus.media_collection_prefix}"
        copy.milvus.sightings_collection = f"{prefix}_{copy.milvus.sightings_collection}"
        copy.milvus.enrolled_collection_prefix = f"{prefix}_{copy.milvus.enrolled_collection_prefix}"
        copy.matching.pdq_collection = f"{prefix}_{copy.matching.pdq_collection}"
        copy.matching.reference_collection = f"{prefix}_{copy.matching.reference_collection}"
        for bucket in copy.minio.buckets.all():
            if bucket is not copy.minio.buckets.milvus:  # Milvus's own bucket is fixed at its start
                bucket.name = f"{tag}-{bucket.name}".lower().replace("_", "-").replace(".", "-")
        return copy

    # -- names derived from configuration ------------------------------------------------------
    def face_collection(self, model_name: str | None = None) -> str:
        """The Milvus collection of one embedder's faces: vectors of two models never share one."""
        return f"{self.milvus.collection_prefix}_{self.model_tag(model_name)}_v{self.milvus.schema_version}"

    def enrolled_collection(self, model_name: str | None = None) -> str:
        """The Milvus collection of one embedder's enrolled reference faces (partitioned by case)."""
        return f"{self.milvus.enrolled_collection_prefix}_{self.model_tag(model_name)}_v{self.milvus.schema_version}"

    def model_tag(self, model_name: str | None = None) -> str:
        """The model's name as collections carry it (default: the configured embedder)."""
        return (model_name or self.models.embedder.name).replace("-", "_").replace(".", "_")

    def scrape_targets_dir(self) -> Path | None:
        """Where processes announce their metrics endpoints to the local Prometheus (None elsewhere)."""
        return self.stack.home / "prometheus" / "targets" if self.profile == "local" else None

    def database_url(self) -> str:
        if self.database.url_file is not None:
            return self.database.url_file.read_text().strip()
        return self.database.url or f"sqlite:///{self.stack.home / 'cases.sqlite3'}"


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInput("bad_config", f"{path}: a configuration file must hold a mapping")
    return data


def load_settings(profile: str | None = None, config_file: str | Path | None = None) -> Settings:
    """Build the settings from profile, site file and environment (see the module docstring)."""
    profile = profile or os.environ.get("MIMAMORI_PROFILE", "local")
    profile_file = PROFILES_DIR / f"{profile}.yaml"
    if not profile_file.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise InvalidInput("unknown_profile", f"unknown profile {profile!r} (known: {known})")
    values = _read_yaml(profile_file)
    site_file = config_file or os.environ.get("MIMAMORI_CONFIG")
    if site_file:
        values = _deep_merge(values, _read_yaml(Path(site_file)))
    values["profile"] = profile
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests that change the environment call ``get_settings.cache_clear()``."""
    return load_settings()
