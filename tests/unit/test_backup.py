"""Backups without a stack: sealing, the key file, the database dump, retention, withdrawals repeated.

The whole round trip through Milvus and MinIO (create, purge, restore, search) is
tests/integration/test_backup_restore.py, on a private stack.
"""

from __future__ import annotations

import datetime as dt
import io
import os

import pytest
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Conflict, Misconfigured
from mimamori.services import backup, cases
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.stores.backups import BackupCorrupt, DirectoryTarget, create_key, load_key, seal, unseal
from mimamori.stores.cases import AuditEvent, Case, Consent, open_database
from mimamori.stores.dumps import dump_tables, load_tables, occupied_tables
from tests.support.workspace import MemoryWorkspace, consent_record

ADMIN = Actor("ada", "admin")


def sealed(key: bytes, data: bytes, part: str = "p", backup_id: str = "b1", chunk: int = 4096) -> bytes:
    sink = io.BytesIO()
    seal(key, backup_id, part, io.BytesIO(data), sink, chunk)
    return sink.getvalue()


def opened(key: bytes, data: bytes, part: str = "p", backup_id: str = "b1") -> bytes:
    sink = io.BytesIO()
    unseal(key, backup_id, part, io.BytesIO(data), sink)
    return sink.getvalue()


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 3 * 4096 + 5])
def test_sealed_parts_open_to_the_same_bytes(size):
    key, data = os.urandom(32), os.urandom(size)
    box = sealed(key, data)
    # Not in the clear: a run of 16 random bytes turns up in a random box by chance with odds of
    # about 2**-128; one byte (size 1) turns up in most boxes whatever the cipher, so it tells nothing.
    assert size < 16 or data[:64] not in box
    assert opened(key, box) == data


def test_a_changed_cut_or_misplaced_part_never_opens():
    key, data = os.urandom(32), os.urandom(3 * 4096)
    box = sealed(key, data)
    flipped = bytearray(box)
    flipped[len(box) // 2] ^= 1
    for bad, part, backup_id in [(bytes(flipped), "p", "b1"),  # a bit changed
                                 (box[:-100], "p", "b1"),  # cut short
                                 (box[: len(box) - (4096 + 16 + 17)], "p", "b1"),  # the last chunk dropped
                                 (box, "other-part", "b1"),  # another part's name
                                 (box, "p", "b2")]:  # another backup
        with pytest.raises(BackupCorrupt):
            opened(key, bad, part, backup_id)
    with pytest.raises(BackupCorrupt, match="wrong key"):
        opened(os.urandom(32), box)


def test_the_key_file_must_be_private_and_well_formed(tmp_path):
    path = tmp_path / "backup.key"
    with pytest.raises(Misconfigured, match="backup key"):
        load_key(None)
    with pytest.raises(Misconfigured, match="does not exist"):
        load_key(path)
    create_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(load_key(path)) == 32
    with pytest.raises(FileExistsError):
        create_key(path)  # never overwritten: the old backups need the old key
    path.chmod(0o640)
    with pytest.raises(Misconfigured, match="chmod 600"):
        load_key(path)
    path.chmod(0o600)
    path.write_text("c2hvcnQ=\n")
    with pytest.raises(Misconfigured, match="32-byte"):
        load_key(path)


def fill(url: str) -> None:
    sessions = open_database(url)
    with sessions.begin() as session:
        session.add(Case(id="c1", display_name="Client C.", created_by="ada"))
        session.flush()
        session.add(Consent(case_id="c1", given_by="the client", relationship_to_client="self",
                            given_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), scope=["search", "watchlist"],
                            recorded_by="staff", document_sha256="ab" * 32))
        session.add(AuditEvent(actor="ada", role="admin", action="create_case", case_id="c1", details={"k": [1, 2]}))


def test_every_table_is_dumped_and_loaded_back_into_an_empty_database(tmp_path):
    source, target = f"sqlite:///{tmp_path}/a.sqlite3", f"sqlite:///{tmp_path}/b.sqlite3"
    fill(source)
    engine = open_database(source).kw["bind"]
    dump = dump_tables(engine, tmp_path / "dump.jsonl.gz")
    assert dump.revision is not None
    assert {"cases", "consents", "audit_events", "matches", "match_decisions", "users"} <= set(dump.rows)
    assert (dump.rows["cases"], dump.rows["consents"], dump.rows["audit_events"]) == (1, 1, 1)
    restored = open_database(target)
    assert occupied_tables(restored.kw["bind"]) == {}
    assert load_tables(restored.kw["bind"], tmp_path / "dump.jsonl.gz", dump) == dump.rows
    with restored() as session:
        consent = session.scalars(select(Consent)).one()
        assert consent.given_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert consent.scope == ["search", "watchlist"] and consent.case_id == "c1"
        assert session.scalars(select(AuditEvent)).one().details == {"k": [1, 2]}
    with pytest.raises(Conflict, match="empty database"):  # never on top of data
        load_tables(restored.kw["bind"], tmp_path / "dump.jsonl.gz", dump)
    with pytest.raises(Conflict, match="migration"):
        load_tables(open_database(f"sqlite:///{tmp_path}/c.sqlite3").kw["bind"], tmp_path / "dump.jsonl.gz",
                    backup.TablesDump("0001", dump.rows))


def test_a_directory_target_lists_only_complete_backups(tmp_path):
    target = DirectoryTarget(tmp_path / "backups")
    part = tmp_path / "part"
    part.write_bytes(b"x")
    target.put("20260101T000000Z-aaaaaa", "database.jsonl.gz", part)
    assert target.backup_ids() == []  # no manifest yet: not a backup
    target.put("20260101T000000Z-aaaaaa", "manifest.enc", part)
    assert target.backup_ids() == ["20260101T000000Z-aaaaaa"]
    assert oct((tmp_path / "backups" / "20260101T000000Z-aaaaaa" / "manifest.enc").stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def work(tmp_path):
    settings = load_settings("local")
    settings.backup.destination = str(tmp_path / "backups")
    settings.backup.retention_days = 30
    return MemoryWorkspace(settings, tmp_path / "cases.sqlite3", {}, [])


def test_backups_past_retention_are_pruned_and_the_pruning_audited(work, tmp_path):
    target = DirectoryTarget(tmp_path / "backups")
    part = tmp_path / "manifest"
    part.write_bytes(b"x")
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    old, recent = "20261030T000000Z-aaaaaa", "20261102T000000Z-bbbbbb"  # 32 and 29 days old
    for backup_id in (old, recent):
        target.put(backup_id, "manifest.enc", part)
    assert backup.prune_backups(work, ADMIN, now) == [old]
    assert target.backup_ids() == [recent]
    with work.sessions() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.action == "backup_prune")).one()
    assert row.details["backups"] == [old] and row.details["retention_days"] == 30


def test_a_restore_withdraws_again_what_a_newer_backup_records_as_withdrawn(work):
    for case_id in ("kept", "gone", "reopened"):
        cases.create_case(work, ADMIN, case_id, "Client")
        record_consent(work, ADMIN, case_id, ConsentRecord.model_validate(consent_record()))
    with work.sessions() as session:
        created = {case.id: case.created_at for case in session.scalars(select(Case))}
    later = backup.Manifest("20991231T000000Z-cccccc", "", "ada", None, {}, [], withdrawn=[
        (backup.case_digest("gone"), (created["gone"] + dt.timedelta(minutes=1)).isoformat()),
        # withdrawn before this case of the same id was opened: an older case, not this one
        (backup.case_digest("reopened"), (created["reopened"] - dt.timedelta(days=1)).isoformat())])
    assert backup.withdraw_again(work, ADMIN, [later]) == ["gone"]
    with work.sessions() as session:
        assert sorted(session.scalars(select(Case.id))) == ["kept", "reopened"]
    assert [digest for digest, _ in backup.withdrawals(work)] == [backup.case_digest("gone")]
