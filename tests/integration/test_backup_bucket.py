"""A backup to an S3 bucket (the shared stack's MinIO, names of its own): made, listed, restored, and
refused once a part is changed. The full loss-and-restore round trip is test_backup_restore.py."""

from __future__ import annotations

import io
import uuid

import pytest
from sqlalchemy import select

from mimamori.services import backup, cases
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.services.workspace import Workspace
from mimamori.stores.backups import BackupCorrupt, create_key
from mimamori.stores.cases import Case, Consent
from mimamori.stores.dumps import occupied_tables
from mimamori.stores.objects import object_client
from tests.integration.helpers import isolated_settings
from tests.support.workspace import consent_record

pytestmark = pytest.mark.integration
ADMIN = Actor("ada", "admin")


def test_a_backup_in_a_bucket_is_listed_restored_and_refused_when_changed(stack, settings, tmp_path):
    bucket = f"backup-test-{uuid.uuid4().hex[:10]}"
    client = object_client(settings)
    with isolated_settings(settings) as s:
        s.backup.destination = f"s3://{bucket}/nightly"
        s.backup.key_file = tmp_path / "backup.key"
        s.backup.collections = ["{milvus.collection_prefix}_*"]  # the scratch face collection (empty)
        create_key(s.backup.key_file)
        try:
            work = Workspace(s)
            cases.create_case(work, ADMIN, "c1", "Client")
            record_consent(work, ADMIN, "c1", ConsentRecord.model_validate(consent_record()))
            references = s.minio.buckets.references.name
            work.objects.put_object(references, "cases/c1/photo.jpg", io.BytesIO(b"jpeg"), 4, content_type="image/jpeg")
            manifest, pruned = backup.create_backup(work, ADMIN)
            assert pruned == [] and [m.id for m in backup.list_backups(s)] == [manifest.id]
            kinds = {part.kind: part for part in manifest.parts}
            assert set(kinds) == {"tables", "collection", "bucket"}
            assert {p.what: p.count for p in manifest.parts if p.kind == "bucket"} == {"crops": 0, "references": 1}
            names = {o.object_name for o in client.list_objects(bucket, recursive=True)}
            assert f"nightly/{manifest.id}/manifest.enc" in names
            stored = client.get_object(bucket, f"nightly/{manifest.id}/database.jsonl.gz").read()
            assert b"c1" not in stored and b"Client" not in stored  # sealed

            work.objects.remove_object(references, "cases/c1/photo.jpg")
            fresh = s.model_copy(deep=True)
            fresh.database.url = f"sqlite:///{tmp_path}/restored.sqlite3"
            report = backup.restore_backup(Workspace(fresh), ADMIN, manifest.id)
            assert report.objects == {"crops": 0, "references": 1}
            assert work.objects.get_object(references, "cases/c1/photo.jpg").read() == b"jpeg"
            with Workspace(fresh).sessions() as session:
                assert [c.id for c in session.scalars(select(Case))] == ["c1"]
                assert session.scalars(select(Consent)).one().given_by == consent_record()["given_by"]

            client.put_object(bucket, f"nightly/{manifest.id}/database.jsonl.gz", io.BytesIO(b"changed"), 7)
            other = s.model_copy(deep=True)
            other.database.url = f"sqlite:///{tmp_path}/refused.sqlite3"
            with pytest.raises(BackupCorrupt, match="does not match its manifest"):
                backup.restore_backup(Workspace(other), ADMIN, manifest.id)
            assert occupied_tables(Workspace(other).sessions.kw["bind"]) == {"audit_events": 1}  # the refusal only
        finally:
            if client.bucket_exists(bucket):
                for obj in client.list_objects(bucket, recursive=True):
                    client.remove_object(bucket, obj.object_name)
                client.remove_bucket(bucket)
