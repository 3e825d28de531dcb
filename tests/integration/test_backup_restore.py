"""Backup, total loss, restore: on a private stack (issue 22, acceptance 4).

Photos are indexed by the real pipeline, two cases are opened, consented and enrolled (each
finds its re-upload in the index: a match), one match is confirmed and one rejected. Then,
through the CLI as an operator would: ``backup create``; ``stack down --purge`` and the case
database deleted too (the disk is gone: ``--purge`` itself leaves the database file);
``stack up`` on nothing; ``backup restore``. Every row of every table, the enrolled faces,
the crops and reference photos must be back, and a search by an enrolled photo must find
the same faces with the same similarities as before.

It kills and purges services, so it runs on a stack of its own (tests/support/own_stack.py,
ports +300: the +100 and +200 sets are other private stacks'), never the shared one.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import MetaData, select

from mimamori.core.config import load_settings
from mimamori.services import cases, enrolment, matches, search
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.services.workspace import Workspace
from mimamori.stack.stack import Stack
from mimamori.stores.backups import create_key
from mimamori.stores.cases import Match, close_database
from mimamori.stores.milvus import disconnect
from mimamori.stores.objects import object_client
from tests.integration import samples as sample_sets
from tests.integration.helpers import publish, run_pipeline, snapshot
from tests.support import edits
from tests.support.own_stack import private_settings, start
from tests.support.stack_cli import mimamori, site_environment
from tests.support.workspace import consent_record

pytestmark = pytest.mark.integration
ADMIN = Actor("ada", "admin")
OFFSET = int(os.environ.get("MIMAMORI_TEST_RESTORE_PORT_OFFSET", "300"))
PEOPLE = {"case-paul": "paul_rudd.jpg", "case-kate": "kate_siegel.jpg"}


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


# Columns a restore sets to its own moment: its writes of the vectors and hashes are newer than the backup's.
WRITE_TIMES = {"cases": "faces_written_at", "reference_media": "hashes_written_at"}


def everything(work: Workspace, write_times: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table of the case database, in primary-key order, without the columns of
    WRITE_TIMES (``write_times``: only those)."""
    engine = work.sessions.kw["bind"]
    metadata = MetaData()
    with engine.connect() as connection:
        metadata.reflect(connection)
        tables = [t for t in metadata.sorted_tables if t.name in WRITE_TIMES or not write_times]
        return {table.name: [tuple(row) for row in connection.execute(
                    select(*(c for c in table.columns if (c.name == WRITE_TIMES.get(table.name)) == write_times))
                    .order_by(*(table.primary_key.columns or table.columns)))]
                for table in tables}


def objects(settings) -> dict[str, set[tuple[str, int]]]:
    client = object_client(settings)
    return {name: {(o.object_name, o.size) for o in client.list_objects(getattr(settings.minio.buckets, name).name,
                                                                      recursive=True)}
            for name in ("crops", "references")}


def state(settings, photos: dict[str, bytes]) -> dict:
    """The searches first (their audit rows are then in the tables read after)."""
    work = Workspace(settings)
    found = {"search": {case: [(hit.face_id, round(hit.similarity, 4)) for hit in search.search_faces(
        work, ADMIN, photo=(PEOPLE[case], photos[case], "image/jpeg"))] for case in PEOPLE}}
    found.update(tables=everything(work), objects=objects(settings),
                 enrolled={case: work.enrolled_for().count(case) for case in PEOPLE})
    return found


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory, testdata):
    folder = tmp_path_factory.mktemp("restore")
    settings = private_settings(load_settings("local"), folder / "stack", OFFSET)
    settings.backup.destination = str(folder / "backups")
    settings.backup.key_file = folder / "backup.key"
    create_key(settings.backup.key_file)
    start(Stack(settings))
    yield settings
    close_database(settings.database_url())
    disconnect(settings)
    mimamori(site_environment(settings), "stack", "down", "--purge", check=False)


def index_and_open_cases(settings, testdata, photos: dict[str, bytes]) -> None:
    """Re-uploads of both clients' photos and a group photo indexed by the pipeline; both cases opened,
    consented and enrolled (each finds its re-upload: a match); one match confirmed, one rejected."""
    reuploads = [sample_sets.Sample(f"{case}-reupload", jpeg(edits.border(edits.crop(
        Image.open(io.BytesIO(data)).convert("RGB"), 0.15), 0.05)), "image/jpeg", "faces:1")
        for case, data in photos.items()]
    group = sample_sets.Sample("multiface", (testdata / "faces" / "multiface.jpg").read_bytes(), "image/jpeg", "faces")
    publish(settings, [*reuploads, group], "live")
    for _ in range(3):  # on a loaded machine the idle end can come before the group has joined
        run_pipeline(settings, settings.kafka.consumer_group)
        if snapshot(settings)["media"] == 3:
            break
    assert snapshot(settings)["media"] == 3
    work = Workspace(settings)
    for case, data in photos.items():
        cases.create_case(work, ADMIN, case, "Client")
        record_consent(work, ADMIN, case, ConsentRecord.model_validate(consent_record()))
        result = enrolment.enroll(work, ADMIN, case, [(PEOPLE[case], data, "image/jpeg")])
        assert result.retro_matches >= 1, f"{case}: its re-upload was not found in the index"
    with work.sessions() as session:
        found = {m.case_id: m.id for m in session.scalars(select(Match).order_by(Match.id))}
    matches.review(work, ADMIN, found["case-paul"], "confirmed", note="the client's photo")
    matches.review(work, ADMIN, found["case-kate"], "rejected", note="someone else")


def lose_everything(settings, environment: dict[str, str]) -> None:
    """The disk is gone: every service's data (`stack down --purge`), and the case database with it."""
    close_database(settings.database_url())
    disconnect(settings)
    mimamori(environment, "stack", "down", "--purge")
    database = settings.database_url().removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        Path(database + suffix).unlink(missing_ok=suffix != "")
    mimamori(environment, "stack", "up")
    assert not any(objects(settings).values())  # nothing left


def test_backup_purge_up_restore_brings_everything_back(stack_settings, testdata):
    settings = stack_settings
    photos = {case: (testdata / "faces" / name).read_bytes() for case, name in PEOPLE.items()}
    index_and_open_cases(settings, testdata, photos)
    before = state(settings, photos)
    assert all(before["search"].values()) and all(before["enrolled"].values())
    assert before["objects"]["crops"] and before["objects"]["references"]

    environment = site_environment(settings)
    timings = {}
    began = time.monotonic()
    created = mimamori(environment, "backup", "create").stdout
    timings["backup create"] = time.monotonic() - began
    backup_id = re.search(r"backup (\S+) ->", created).group(1)
    assert backup_id in mimamori(environment, "backup", "list").stdout
    began = time.monotonic()
    lose_everything(settings, environment)
    timings["stack down --purge, up"] = time.monotonic() - began
    began = time.monotonic()
    restored = mimamori(environment, "backup", "restore", backup_id).stdout
    timings["backup restore"] = time.monotonic() - began
    print(created, restored, {step: round(s, 1) for step, s in timings.items()})

    close_database(settings.database_url())
    after = state(settings, photos)
    restore_began = dt.datetime.fromtimestamp(time.time() - timings["backup restore"] - 1, dt.UTC)
    for table, times in everything(Workspace(settings), write_times=True).items():  # naive UTC on SQLite
        assert all(at.replace(tzinfo=dt.UTC) >= restore_began for (at,) in times), (table, times, restore_began)
    assert len(everything(Workspace(settings), write_times=True)["cases"]) == len(PEOPLE)
    assert after["objects"] == before["objects"]
    assert after["enrolled"] == before["enrolled"]
    assert after["search"] == before["search"]
    for table, rows in before["tables"].items():
        if table == "audit_events":  # then the restore's own row, and the searches of state()
            assert after["tables"][table][:len(rows)] == rows
            assert after["tables"][table][len(rows)][4] == "backup_restore"
        else:
            assert after["tables"][table] == rows, table
    assert {"cases", "consents", "enrolled_photos", "matches", "match_decisions"} <= {
        table for table, rows in before["tables"].items() if rows}
