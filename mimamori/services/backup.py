"""Backups of what cannot be recomputed, and restoring them (``mimamori backup create|list|restore|prune``).

A backup holds, each as one sealed part (``stores/backups.py``): every table of the case
database (``stores/dumps.py``), the Milvus collections ``backup.collections`` names (the
enrolled faces; by default also the face index, media and sightings), and the buckets
``backup.buckets`` names (face crops, reference photos). Its manifest says what each part
is, how many rows or objects it holds and the SHA-256 of its sealed bytes; a restore checks
every part against it before it writes anything.

Withdrawal reaches backups in two ways. Backups expire: ``create`` and ``prune`` delete
every backup older than ``backup.retention_days``, so a withdrawn case is gone from all of
them that long after its withdrawal. And a restore withdraws again: each manifest lists the
withdrawals its audit log records (SHA-256 of the case id, with the time), and a restore
from an older backup withdraws every restored case that a newer backup says was withdrawn.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from mimamori.core.config import Settings
from mimamori.core.errors import InvalidInput, NotFound
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.backups import BackupCorrupt, BackupTarget, BucketTarget, DirectoryTarget, load_key, seal, unseal
from mimamori.stores.cases import AuditEvent, Case, utcnow
from mimamori.stores.dumps import (
    TablesDump,
    dump_bucket,
    dump_collection,
    dump_tables,
    load_bucket,
    load_collection,
    load_tables,
)
from mimamori.stores.references import ReferenceMedia

FORMAT = 1
MANIFEST = "manifest.enc"
ID_TIME = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Part:
    name: str  # the file in the backup
    kind: str  # tables, collection or bucket
    what: str  # the collection's or bucket's name; "database" for tables
    count: int  # rows or objects
    bytes: int  # sealed size
    sha256: str  # of the sealed bytes


@dataclass
class Manifest:
    id: str
    created_at: str
    created_by: str
    database_revision: str | None
    table_rows: dict[str, int]
    parts: list[Part]
    # (SHA-256 of the case id, withdrawn at): withdrawals a restore of an older backup repeats.
    withdrawn: list[tuple[str, str]] = field(default_factory=list)
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise BackupCorrupt("backup_corrupt", f"backup format {data.get('format')} is not {FORMAT}")
        data["parts"] = [Part(**part) for part in data["parts"]]
        data["withdrawn"] = [tuple(entry) for entry in data.get("withdrawn", [])]
        return cls(**data)


@dataclass(frozen=True)
class RestoreReport:
    backup_id: str
    table_rows: dict[str, int]
    collections: dict[str, int]
    objects: dict[str, int]
    withdrawn_again: list[str]
    seconds: dict[str, float]


# --- where, and with what key --------------------------------------------------------------------

def backup_target(settings: Settings) -> BackupTarget:
    destination = settings.backup.destination or str(settings.stack.home / "backups")
    if not destination.startswith("s3://"):
        return DirectoryTarget(Path(destination).expanduser())
    from mimamori.stores.objects import object_client

    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidInput("bad_config", f"backup.destination {destination!r}: s3://BUCKET/PREFIX")
    store = settings.model_copy(update={"minio": settings.backup.s3}) if settings.backup.s3 else settings
    return BucketTarget(object_client(store), bucket, prefix.rstrip("/") + "/" if prefix else "")


def backup_collections(settings: Settings, alias: str) -> list[str]:
    """The collections on the server that ``backup.collections`` names."""
    from pymilvus import utility

    sections = {name: getattr(settings, name) for name in type(settings).model_fields}
    try:
        patterns = [pattern.format(**sections) for pattern in settings.backup.collections]
    except (AttributeError, KeyError) as error:
        raise InvalidInput("bad_config", f"backup.collections: no setting {error}") from None
    return sorted(name for name in utility.list_collections(using=alias)
                  if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns))


def backup_buckets(settings: Settings) -> dict[str, str]:
    """{configured name under minio.buckets: bucket name}."""
    found = {}
    for name in settings.backup.buckets:
        bucket = getattr(settings.minio.buckets, name, None)
        if bucket is None:
            raise InvalidInput("bad_config", f"backup.buckets: no bucket {name!r} under minio.buckets")
        found[name] = bucket.name
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def case_digest(case_id: str) -> str:
    return hashlib.sha256(case_id.encode()).hexdigest()


# --- create --------------------------------------------------------------------------------------

def create_backup(work: Workspace, actor: Actor, now: dt.datetime | None = None) -> tuple[Manifest, list[str]]:
    """Make a backup; then delete those past retention. (Its manifest, the ids pruned.)"""
    from mimamori.stores.milvus import connect

    settings = work.settings
    now = now or dt.datetime.now(dt.UTC)
    with refusals_audited(work.sessions, actor, "backup_create"):
        key = load_key(settings.backup.key_file)
        target = backup_target(settings)
        backup_id = f"{now.strftime(ID_TIME)}-{secrets.token_hex(3)}"
        parts: list[Part] = []
        with tempfile.TemporaryDirectory(prefix="mimamori-backup-") as folder:
            scratch = Path(folder)

            def add(name: str, kind: str, what: str, count: int, plain: Path) -> None:
                sealed = scratch / f"{name}.sealed"
                with open(plain, "rb") as source, open(sealed, "wb") as sink:
                    seal(key, backup_id, name, source, sink, settings.backup.chunk_bytes)
                plain.unlink()
                target.put(backup_id, name, sealed)
                parts.append(Part(name, kind, what, count, sealed.stat().st_size, _sha256(sealed)))
                sealed.unlink()

            engine = work.sessions.kw["bind"]
            tables = dump_tables(engine, scratch / "database")
            add("database.jsonl.gz", "tables", "database", sum(tables.rows.values()), scratch / "database")
            alias = connect(settings)
            for name in backup_collections(settings, alias):
                rows = dump_collection(alias, name, scratch / name)
                add(f"collection-{name}.jsonl.gz", "collection", name, rows, scratch / name)
            client = work.objects
            for config_name, bucket in backup_buckets(settings).items():
                count = dump_bucket(client, bucket, scratch / config_name)
                add(f"bucket-{config_name}.tar", "bucket", config_name, count, scratch / config_name)
            manifest = Manifest(backup_id, now.isoformat(), actor.name, tables.revision, tables.rows, parts,
                                withdrawals(work))
            plain, sealed = scratch / "manifest.json", scratch / MANIFEST
            plain.write_bytes(manifest.to_json())
            with open(plain, "rb") as source, open(sealed, "wb") as sink:
                seal(key, backup_id, MANIFEST, source, sink, settings.backup.chunk_bytes)
            target.put(backup_id, MANIFEST, sealed)  # last: a backup without its manifest is not listed
    record(work.sessions, actor, "backup_create", target=backup_id, result_count=len(parts),
           destination=target.describe(), rows=sum(tables.rows.values()),
           parts={part.name: part.count for part in parts})
    return manifest, prune_backups(work, actor, now)


def withdrawals(work: Workspace) -> list[tuple[str, str]]:
    """Every withdrawal the audit log records: (SHA-256 of the case id, when)."""
    with work.sessions() as session:
        rows = session.execute(select(AuditEvent.case_id, AuditEvent.at).where(
            AuditEvent.action == "withdraw", AuditEvent.outcome == "ok", AuditEvent.case_id.is_not(None)))
        return [(case_digest(case_id), at.isoformat()) for case_id, at in rows]


# --- list, prune ---------------------------------------------------------------------------------

def _created(backup_id: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(backup_id.split("-", 1)[0], ID_TIME).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def read_manifest(key: bytes, target: BackupTarget, backup_id: str) -> Manifest:
    """The manifest of ``backup_id``, one of ``target.backup_ids()``, opened with ``key``."""
    with tempfile.TemporaryDirectory(prefix="mimamori-backup-") as folder:
        sealed, plain = Path(folder) / MANIFEST, Path(folder) / "manifest.json"
        target.get(backup_id, MANIFEST, sealed)
        with open(sealed, "rb") as source, open(plain, "wb") as sink:
            unseal(key, backup_id, MANIFEST, source, sink)
        manifest = Manifest.from_json(plain.read_bytes())
    if manifest.id != backup_id:
        raise BackupCorrupt("backup_corrupt", f"the manifest in {backup_id} is that of {manifest.id}")
    return manifest


def list_backups(settings: Settings) -> list[Manifest]:
    """Every backup at the destination, oldest first (their manifests opened with the key)."""
    key, target = load_key(settings.backup.key_file), backup_target(settings)
    return [read_manifest(key, target, backup_id) for backup_id in target.backup_ids()]


def prune_backups(work: Workspace, actor: Actor, now: dt.datetime | None = None) -> list[str]:
    """Delete the backups older than ``backup.retention_days``; return their ids."""
    now = now or dt.datetime.now(dt.UTC)
    target = backup_target(work.settings)
    limit = now - dt.timedelta(days=work.settings.backup.retention_days)
    pruned = []
    for backup_id in target.backup_ids():
        created = _created(backup_id)
        if created is not None and created < limit:
            target.delete(backup_id)
            pruned.append(backup_id)
    if pruned:
        record(work.sessions, actor, "backup_prune", result_count=len(pruned), backups=pruned,
               retention_days=work.settings.backup.retention_days)
    return pruned


# --- restore -------------------------------------------------------------------------------------

def restore_backup(work: Workspace, actor: Actor, backup_id: str) -> RestoreReport:
    """Put a backup back: into an empty database, its collections and buckets (upserts: idempotent).

    Every part is fetched and checked against the manifest (size, SHA-256, then each chunk's
    tag) before the first write; then the database, the collections, the buckets; then the
    withdrawals that newer backups record are made again.
    """
    from mimamori.stores.dumps import occupied_tables

    settings = work.settings
    seconds: dict[str, float] = {}
    with refusals_audited(work.sessions, actor, "backup_restore", target=backup_id):
        key, target = load_key(settings.backup.key_file), backup_target(settings)
        backup_ids = target.backup_ids()  # one listing: a bucket's lists every part of every backup
        if backup_id not in backup_ids:
            raise NotFound("unknown_backup", f"no backup {backup_id} in {target.describe()}")
        manifest = read_manifest(key, target, backup_id)
        occupied = occupied_tables(work.sessions.kw["bind"])
        if occupied:
            raise InvalidInput("restore_not_empty", f"the case database is not empty ({occupied}): a restore "
                               "goes into a new one (after `stack up` on an empty stack)")
        later = [read_manifest(key, target, other) for other in backup_ids if other > backup_id]
        with tempfile.TemporaryDirectory(prefix="mimamori-restore-") as folder:
            began = time.monotonic()
            plain = _fetch_verified(target, key, manifest, Path(folder))
            seconds["fetch and verify"] = time.monotonic() - began
            table_rows, collections, objects = _load_parts(work, manifest, plain, seconds)
    began = time.monotonic()
    withdrawn_again = withdraw_again(work, actor, later)
    seconds["withdrawals"] = time.monotonic() - began
    report = RestoreReport(backup_id, table_rows, collections, objects, withdrawn_again,
                           {k: round(v, 2) for k, v in seconds.items()})
    record(work.sessions, actor, "backup_restore", target=backup_id, result_count=sum(table_rows.values()),
           collections=collections, objects=objects, withdrawn_again=len(withdrawn_again), seconds=report.seconds)
    return report


def _fetch_verified(target: BackupTarget, key: bytes, manifest: Manifest, scratch: Path) -> dict[str, Path]:
    """Every part fetched, checked against the manifest and opened: {part name: its plain file}."""
    plain: dict[str, Path] = {}
    for part in manifest.parts:
        sealed = scratch / f"{part.name}.sealed"
        target.get(manifest.id, part.name, sealed)
        if sealed.stat().st_size != part.bytes or _sha256(sealed) != part.sha256:
            raise BackupCorrupt("backup_corrupt", f"{manifest.id}/{part.name} does not match its manifest "
                                "(size or SHA-256): the backup was changed or damaged")
        plain[part.name] = scratch / part.name
        with open(sealed, "rb") as source, open(plain[part.name], "wb") as sink:
            unseal(key, manifest.id, part.name, source, sink)
        sealed.unlink()
    return plain


def _load_parts(work: Workspace, manifest: Manifest, plain: dict[str, Path], seconds: dict[str, float]
                ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The database, then the collections, then the buckets: (rows per table, per collection, objects per bucket)."""
    from mimamori.stores.milvus import connect
    from mimamori.stores.objects import ensure_buckets

    settings = work.settings
    began = time.monotonic()
    tables = next(p for p in manifest.parts if p.kind == "tables")
    table_rows = load_tables(work.sessions.kw["bind"], plain[tables.name],
                             TablesDump(manifest.database_revision, manifest.table_rows))
    seconds["database"] = time.monotonic() - began
    began = time.monotonic()
    alias = connect(settings)
    collections = {}
    for part in (p for p in manifest.parts if p.kind == "collection"):
        name, rows = load_collection(alias, plain[part.name])
        if rows != part.count:
            raise BackupCorrupt("backup_corrupt", f"{part.name}: {rows} rows, the manifest says {part.count}")
        collections[name] = rows
    _note_restored_writes(work)
    seconds["collections"] = time.monotonic() - began
    began = time.monotonic()
    buckets = backup_buckets(settings)
    ensure_buckets(settings)
    objects = {}
    for part in (p for p in manifest.parts if p.kind == "bucket"):
        if part.what not in buckets:
            raise InvalidInput("bad_config", f"the backup has bucket {part.what!r}, which backup.buckets does not name")
        objects[part.what] = load_bucket(work.objects, buckets[part.what], plain[part.name])
    seconds["objects"] = time.monotonic() - began
    return table_rows, collections, objects


def _note_restored_writes(work: Workspace) -> None:
    """The restored face vectors and hashes were written now, not when their rows say: the searches
    that wait for a case's newest write (stores/milvus.seen_writes) must wait for the restore's."""
    now = utcnow()
    with work.sessions.begin() as session:
        session.execute(update(Case).values(faces_written_at=now))
        session.execute(update(ReferenceMedia).values(hashes_written_at=now))


def withdraw_again(work: Workspace, actor: Actor, later: list[Manifest]) -> list[str]:
    """Withdraw each restored case that a newer backup records as withdrawn after it was created."""
    from mimamori.services.cases import withdraw

    withdrawn: dict[str, dt.datetime] = {}
    for manifest in later:
        for digest, at in manifest.withdrawn:
            withdrawn[digest] = max(withdrawn.get(digest, dt.datetime.min.replace(tzinfo=dt.UTC)),
                                    dt.datetime.fromisoformat(at))
    if not withdrawn:
        return []
    with work.sessions() as session:
        cases = [(case.id, case.created_at) for case in session.scalars(select(Case))]
    again = [case_id for case_id, created in cases
             if case_digest(case_id) in withdrawn and withdrawn[case_digest(case_id)] > created]
    for case_id in again:
        withdraw(work, actor, case_id)
    return again


def describe(manifest: Manifest) -> dict[str, Any]:
    """One line's worth of a backup, for ``backup list``."""
    return {"id": manifest.id, "created_at": manifest.created_at, "created_by": manifest.created_by,
            "parts": {part.name: part.count for part in manifest.parts},
            "bytes": sum(part.bytes for part in manifest.parts)}
