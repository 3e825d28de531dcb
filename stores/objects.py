"""A small client for the object store (MinIO locally, S3 in production)."""

from __future__ import annotations

import json
from pathlib import Path

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.credentials import IamAwsProvider
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from mimamori.core.config import BucketConfig, Settings
from mimamori.media.decode import MediaError


def load_credentials(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"object-store credentials not found at {path}; the local stack writes them on "
            f"`mimamori stack up`, production reads them from MIMAMORI_MINIO__CREDENTIALS_FILE"
        )
    return json.loads(path.read_text())


def object_client(settings: Settings) -> Minio:
    if settings.minio.credentials_provider == "aws_iam":
        # IAM roles for service accounts (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), else the
        # instance profile: short-lived credentials, refreshed by the client.
        return Minio(settings.minio.endpoint, credentials=IamAwsProvider(), secure=settings.minio.secure,
                     region=settings.minio.region)
    credentials = load_credentials(settings.minio.credentials_file)
    return Minio(
        settings.minio.endpoint,
        access_key=credentials["access_key"],
        secret_key=credentials["secret_key"],
        secure=settings.minio.secure,
        region=settings.minio.region,
    )


def read_media_object(client: Minio, bucket: str, key: str, max_bytes: int) -> bytes:
    """An uploaded media file's bytes; its size is checked before any is read.

    ``object_missing`` and ``file_too_large`` are the item's dead-letter reasons; any other
    failure of the store is raised as it is (an outage: the bundle is retried).
    """
    try:
        stat = client.stat_object(bucket, key)
    except S3Error as error:
        if error.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
            raise MediaError("object_missing", f"no object {bucket}/{key}") from None
        raise
    if stat.size is not None and stat.size > max_bytes:
        raise MediaError("file_too_large", f"{stat.size} bytes, over the limit of {max_bytes}")
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def ensure_bucket(client: Minio, bucket: BucketConfig) -> None:
    """Create the bucket if missing and set its lifecycle rule (idempotent)."""
    if not client.bucket_exists(bucket.name):
        client.make_bucket(bucket.name)
    if bucket.expire_days:
        rule = Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id=f"expire-after-{bucket.expire_days}d",
                    expiration=Expiration(days=bucket.expire_days))
        current = client.get_bucket_lifecycle(bucket.name)
        if current is None or [r.rule_id for r in current.rules] != [rule.rule_id]:
            client.set_bucket_lifecycle(bucket.name, LifecycleConfig([rule]))


def ensure_buckets(settings: Settings) -> None:
    client = object_client(settings)
    for bucket in settings.minio.buckets.all():
        ensure_bucket(client, bucket)
