"""The case database's checks that every engine must pass, written once for SQLite and PostgreSQL.

``CaseDatabaseChecks`` holds the tests; a test module subclasses it and gives the engine as a
``database_url`` fixture: tests/unit on a SQLite file, tests/contract on a real PostgreSQL
(pgserver). The class name does not start with ``Test``, so pytest collects only the subclasses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Integer, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from mimamori.core.config import load_settings
from mimamori.core.errors import Conflict
from mimamori.services import audit, queue
from mimamori.services.audit import Actor
from mimamori.services.auth import authenticate, create_api_key, revoke_api_key
from mimamori.services.watchlist import record_matches
from mimamori.services.workspace import Workspace
from mimamori.stores.case_models import CaseModel  # issue 20 (M3): its table in Base.metadata for the compare
from mimamori.stores.cases import (
    ApiKey,
    AuditEvent,
    Base,
    Case,
    CaseAssignment,
    Match,
    MatchDecision,
    open_database,
    utcnow,
)
from mimamori.stores.references import ReferenceMedia  # issue 20 (M1): its table in Base.metadata for the compare
from mimamori.stores.takedowns import Host  # noqa: F401  (issue 19: its tables in Base.metadata for the compare)

HEAD = "0010"  # the newest migration


def same_integer_on_sqlite(context, _inspected, _column, inspected_type, metadata_type) -> bool | None:
    """SQLite's INTEGER holds 64 bits: a BigInteger column there is one (migration 0003 changes
    other engines only); anything else as Alembic compares it."""
    if context.dialect.name == "sqlite" and isinstance(inspected_type, Integer) \
            and isinstance(metadata_type, Integer):
        return False
    return None
BIGGEST_FACE_ID = 2**63 - 1  # face ids are Milvus INT64 keys


class CaseDatabaseChecks:
    """Migrations, the append-only audit log, API keys, unique matches and exclusive claims, on one engine."""

    @pytest.fixture
    def database_url(self) -> str:
        raise NotImplementedError("a subclass gives the engine's URL")

    @pytest.fixture
    def sessions(self, database_url: str) -> sessionmaker:
        return open_database(database_url)

    def test_migrations_are_idempotent_and_times_come_back_in_utc(self, database_url: str):
        sessions = open_database(database_url)
        with sessions.begin() as session:
            session.add(Case(id="c1", display_name="C.", created_by="staff"))
        again = open_database(database_url)  # upgrading an up-to-date database changes nothing
        with again() as session:
            case = session.get(Case, "c1")
            assert case.created_at.tzinfo is not None and abs((case.created_at - utcnow()).total_seconds()) < 60
            assert session.execute(text("select version_num from alembic_version")).scalar() == HEAD

    def test_migration_0010_gives_the_cases_before_it_the_migrations_moment(self, fresh_database_url: str):
        """Their vectors were written before the migration: its moment is one the watchlist's search may
        wait for; left empty, a case would count as having no face and add nothing to wait for."""
        from sqlalchemy import bindparam, create_engine

        from mimamori.stores.cases import UTCDateTime, migrate

        engine = create_engine(fresh_database_url, future=True)
        try:
            migrate(engine, "0009")
            with engine.begin() as connection:
                connection.execute(text("insert into cases (id, display_name, created_at, created_by) "
                                        "values ('c1', 'C.', :at, 'staff')").bindparams(
                    bindparam("at", type_=UTCDateTime())), {"at": utcnow() - dt.timedelta(days=3)})
            before = utcnow() - dt.timedelta(seconds=1)
            migrate(engine)
            with sessionmaker(engine)() as session:
                written = session.get(Case, "c1").faces_written_at
            assert written is not None and written.tzinfo is not None and before <= written <= utcnow()
        finally:
            engine.dispose()

    def test_the_audit_log_is_append_only_in_the_database(self, sessions: sessionmaker):
        audit.record(sessions, Actor("alice", "reviewer"), "search", case_id="c1", result_count=3)
        rewrites = ["update audit_events set actor = 'mallory'", "delete from audit_events"]
        if sessions.kw["bind"].dialect.name == "postgresql":
            rewrites.append("truncate audit_events")
        for statement in rewrites:
            with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
                session.execute(text(statement))
        rows = audit.read(sessions)
        assert [(r.actor, r.action, r.result_count) for r in rows] == [("alice", "search", 3)]

    def test_api_keys_are_stored_hashed_and_can_be_revoked(self, sessions: sessionmaker):
        key = create_api_key(sessions, "bob", "reviewer")
        with sessions() as session:
            stored = session.scalars(select(ApiKey)).one()
        assert key not in stored.key_sha256 and len(stored.key_sha256) == 64
        assert authenticate(sessions, key) == Actor("bob", "reviewer")
        assert authenticate(sessions, key + "x") is None and authenticate(sessions, None) is None
        assert revoke_api_key(sessions, "bob") == 1
        assert authenticate(sessions, key) is None
        with pytest.raises(ValueError, match="unknown role"):
            create_api_key(sessions, "eve", "root")

    def test_the_models_match_the_migrations(self, database_url: str):
        """Autogenerate finds nothing to change on a migrated database: the ORM in stores/cases.py
        and the migrations describe one schema (indexes, types, nullability)."""
        engine = open_database(database_url).kw["bind"]
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": same_integer_on_sqlite})
            assert compare_metadata(context, Base.metadata) == []

    def test_a_match_is_recorded_once_per_case_and_face(self, sessions: sessionmaker):
        now = dt.datetime.now(dt.UTC)
        with sessions.begin() as session:
            session.add(Case(id="c1", display_name="C.", created_by="staff"))
        face = BIGGEST_FACE_ID
        first = record_matches(sessions, [("c1", face, "a" * 64, 0.97)], "m@v", "stream", {"a" * 64: now})
        again = record_matches(sessions, [("c1", face, "a" * 64, 0.98)], "m@v", "stream")
        assert len(first) == 1 and first[0].status == "pending_review" and again == []
        with sessions() as session:
            match = session.scalars(select(Match)).one()
            assert match.scraped_at == now and match.face_id == face
        with sessions() as session:
            assert len(audit.read(sessions)) == 0 and not list(session.scalars(select(AuditEvent)))

    # Issue 20 (M1): reference media rows and the evidence of matches (migration 0007).
    def test_reference_media_is_unique_per_case_and_goes_with_the_case(self, sessions: sessionmaker):
        with sessions.begin() as session:
            session.add(Case(id="r1", display_name="R.", created_by="staff"))
            session.add(ReferenceMedia(case_id="r1", sha256="a" * 64, kind="image", frames=1, hashes=8,
                                       min_quality=93, face_vectors=1, thumbnail_key="cases/r1/references/a.jpg",
                                       added_by="staff"))
        with pytest.raises(DBAPIError), sessions.begin() as session:  # the same media twice in one case
            session.add(ReferenceMedia(case_id="r1", sha256="a" * 64, kind="image", frames=1, hashes=8,
                                       face_vectors=0, added_by="staff"))
        with pytest.raises(DBAPIError), sessions.begin() as session:  # no case, no reference
            session.add(ReferenceMedia(case_id="nobody", sha256="b" * 64, kind="image", frames=1, hashes=8,
                                       face_vectors=0, added_by="staff"))
        with sessions() as session:
            row = session.scalars(select(ReferenceMedia)).one()
            assert (row.original_key, row.added_at.tzinfo) == (None, dt.UTC)
        with sessions.begin() as session:  # withdrawal deletes the case row: the database deletes its references
            session.delete(session.get(Case, "r1"))
        with sessions() as session:
            assert session.scalars(select(ReferenceMedia)).first() is None

    def test_a_match_keeps_its_evidence(self, sessions: sessionmaker):
        evidence = {"fired": ["pdq"], "scores": {"face": 0.41, "pdq": 12},
                    "details": {"pdq": {"quality": 90, "variant": "rotate90", "frame_ms": 0}}}
        with sessions.begin() as session:
            session.add(Case(id="e1", display_name="E.", created_by="staff"))
        [match] = record_matches(sessions, [("e1", BIGGEST_FACE_ID - 1, "c" * 64, 0.953)], "pdq", "stream",
                                 signals={("e1", BIGGEST_FACE_ID - 1): evidence},
                                 image_keys={("e1", BIGGEST_FACE_ID - 1): "pdq/cc/ccc/0.jpg"})
        with sessions() as session:
            stored = session.get(Match, match.id)
            assert (stored.signals, stored.image_key) == (evidence, "pdq/cc/ccc/0.jpg")

    # Issue 20 (M3): per-case model versions (migration 0008): never updated, gone with the case.
    def test_case_model_versions_are_append_only_and_go_with_the_case(self, sessions: sessionmaker):
        with sessions.begin() as session:
            session.add(Case(id="m1", display_name="M.", created_by="staff"))
            session.flush()  # no ORM relationship orders the two inserts
            for version in (1, 2):
                session.add(CaseModel(case_id="m1", version=version, base_model_version="dlib-resnet/v1@x#1",
                                      object_key=f"cases/m1/models/v{version}.npz", weights_sha256="0" * 64,
                                      threshold=0.93, base_threshold=0.94, floor=0.92, positives=3, negatives=200,
                                      rejected=0, decisions=version - 1, reason="manual", trained_by="staff",
                                      report={"positives": 3}))
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
            session.execute(text("update case_models set threshold = 0.5"))
        with pytest.raises(DBAPIError), sessions.begin() as session:  # one row per (case, version)
            session.add(CaseModel(case_id="m1", version=2, base_model_version="v", object_key="k",
                                  weights_sha256="1" * 64, threshold=0.9, base_threshold=0.94, floor=0.92,
                                  positives=1, negatives=0, rejected=0, decisions=0, reason="manual",
                                  trained_by="staff", report={}))
        [match] = record_matches(sessions, [("m1", 77, "d" * 64, 0.95)], "m@v", "stream",
                                 case_scores={("m1", 77): (0.962, 2)})
        with sessions() as session:
            stored = session.get(Match, match.id)
            assert (stored.similarity, stored.case_score, stored.case_model_version) == (0.95, 0.962, 2)
            assert session.scalars(select(CaseModel).where(CaseModel.case_id == "m1")).all()[0].trained_at.tzinfo
        with sessions.begin() as session:  # withdrawal deletes the case row: the database deletes its versions
            session.delete(session.get(Case, "m1"))
        with sessions() as session:
            assert session.scalars(select(CaseModel)).first() is None

    def test_reviewers_racing_for_matches_never_hold_or_decide_the_same_one(self, sessions: sessionmaker):
        """Four reviewers claim the same 40 matches at once, in batches, then each tries to decide
        all of them: every match is held by one reviewer and decided by that one only."""
        work = Workspace(load_settings("local"), sessions)
        reviewers = [Actor(f"r{n}", "reviewer") for n in range(4)]
        with sessions.begin() as session:
            session.add(Case(id="c1", display_name="C.", created_by="staff"))
            session.flush()
            session.add_all(CaseAssignment(case_id="c1", username=r.name, assigned_by="staff") for r in reviewers)
        ids = [m.id for m in record_matches(sessions, [("c1", face, f"{face:064x}", 0.97) for face in range(1, 41)],
                                            "m@v", "stream")]
        held: dict[str, list[int]] = {}
        decided: dict[str, list[int]] = {}
        start = threading.Barrier(len(reviewers))

        def review(actor: Actor, order: list[int]) -> None:
            start.wait()
            held[actor.name] = [i for b in range(0, len(order), 5) for i in queue.claim(work, actor, order[b:b + 5])]
            start.wait()
            decided[actor.name] = []
            for match_id in order:
                with contextlib.suppress(Conflict):  # another reviewer's claim
                    decided[actor.name].append(queue.decide(work, actor, match_id, "rejected").id)

        orders = [ids, ids[::-1], ids[1::2] + ids[::2], ids[::2] + ids[1::2]]
        threads = [threading.Thread(target=review, args=pair) for pair in zip(reviewers, orders, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(i for got in held.values() for i in got) == ids  # each match held once
        assert {name: sorted(got) for name, got in decided.items()} == {name: sorted(got) for name, got in held.items()}
        with sessions() as session:
            rows = [(d.match_id, d.actor) for d in session.scalars(select(MatchDecision))]
            with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as writing:
                writing.execute(text("update match_decisions set decision = 'confirmed'"))
        owner = {i: name for name, got in held.items() for i in got}
        assert sorted(rows) == sorted(owner.items())

    # -- issue 19 (T1): takedowns' state machine and append-only history, enforced by the database --
    TAKEDOWN = ("insert into takedowns (page_url, media_sha256, host_key, state, escalation_step, dns_failures, "
                "created_at, created_by, updated_at) values ('https://x.example/1', '', 'unknown:x.example', 'draft', "
                "0, 0, '2026-11-02 09:00:00', 'staff', '2026-11-02 09:00:00')")
    TRANSITION = text("insert into takedown_transitions (takedown_id, from_state, to_state, actor, role, at, note, "
                      "check_id) values (:id, :a, :b, 'staff', 'admin', '2026-11-02 09:00:00', :note, :check)")

    @staticmethod
    def _move(connection, takedown_id: int, a: str, b: str, note: str | None = "seen", check: str | None = None):
        connection.execute(CaseDatabaseChecks.TRANSITION, {"id": takedown_id, "a": a, "b": b, "note": note,
                                                           "check": check})
        connection.execute(text("update takedowns set state = :b where id = :id"), {"id": takedown_id, "b": b})

    def _new_takedown(self, connection) -> int:
        connection.execute(text(self.TAKEDOWN))
        return connection.execute(text("select max(id) from takedowns")).scalar()

    def test_takedown_states_change_in_the_database_exactly_as_transitions_allows(self, sessions: sessionmaker):
        """Every (from, to) pair by raw SQL: accepted if and only if stores.takedowns.TRANSITIONS has it."""
        from mimamori.stores.takedowns import STATES, TRANSITIONS

        engine = sessions.kw["bind"]
        paths = {"draft": ["draft"]}  # the shortest allowed walk from draft to each state
        frontier = ["draft"]
        while frontier:
            state = frontier.pop(0)
            for following in TRANSITIONS[state]:
                if following not in paths:
                    paths[following] = paths[state] + [following]
                    frontier.append(following)
        assert set(paths) == set(STATES)  # every state is reachable
        for source, target in itertools.product(STATES, STATES):
            with engine.connect() as connection:
                transaction = connection.begin()
                takedown_id = self._new_takedown(connection)
                walk = paths[source]
                for a, b in itertools.pairwise(walk):
                    self._move(connection, takedown_id, a, b)
                try:
                    self._move(connection, takedown_id, source, target)
                    accepted = True
                except DBAPIError as error:
                    assert "illegal takedown transition" in str(error)
                    accepted = False
                transaction.rollback()
            assert accepted == (target in TRANSITIONS[source]), (source, target)

    def test_takedown_removal_needs_evidence_and_its_history_is_append_only(self, sessions: sessionmaker):
        engine = sessions.kw["bind"]
        refusals = {
            "recorded transition": "update takedowns set state = 'sent' where id = :id",
            "current state": "insert into takedown_transitions (takedown_id, from_state, to_state, actor, role, at) "
                             "values (:id, 'sent', 'acknowledged', 'x', 'admin', '2026-11-02')",
            "on evidence": "insert into takedown_transitions (takedown_id, from_state, to_state, actor, role, at, "
                           "note) values (:id, 'draft', 'removed', 'x', 'admin', '2026-11-02', '  ')",
            "starts as draft": self.TAKEDOWN.replace("'draft'", "'removed'"),
        }
        with engine.begin() as connection:
            takedown_id = self._new_takedown(connection)
        for message, statement in refusals.items():
            with pytest.raises(DBAPIError, match=message), engine.begin() as connection:
                connection.execute(text(statement), {"id": takedown_id})
        with engine.begin() as connection:  # a check that found it still up is no evidence of removal
            connection.execute(text("insert into takedown_checks (id, takedown_id, outcome, detail, checked_at, "
                                    "recorded_at) values ('up', :id, 'still_up', '{\"status\": 200}', "
                                    "'2026-11-03', '2026-11-03')"), {"id": takedown_id})
            connection.execute(text("insert into takedown_checks (id, takedown_id, outcome, detail, checked_at, "
                                    "recorded_at) values ('gone', :id, 'gone', '{\"status\": 404}', "
                                    "'2026-11-04', '2026-11-04')"), {"id": takedown_id})
        with pytest.raises(DBAPIError, match="on evidence"), engine.begin() as connection:
            self._move(connection, takedown_id, "draft", "removed", note=None, check="up")
        with engine.begin() as connection:
            self._move(connection, takedown_id, "draft", "removed", note=None, check="gone")
        for statement in ("update takedown_transitions set to_state = 'closed'", "delete from takedown_transitions",
                          "update takedown_checks set outcome = 'gone'", "delete from takedown_checks",
                          "update takedown_transitions set actor = 'mallory'"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        if engine.dialect.name == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text("truncate takedown_transitions cascade"))
        with engine.begin() as connection:  # the withdrawal's scrub is the one update allowed
            connection.execute(text("update takedown_transitions set note = NULL, evidence = NULL"))
            connection.execute(text("update takedown_checks set detail = NULL"))
        with engine.connect() as connection:
            assert connection.execute(text("select state from takedowns where id = :id"),
                                      {"id": takedown_id}).scalar() == "removed"
            assert connection.execute(text("select count(*) from takedown_checks where detail is not null")
                                      ).scalar() == 0

    def test_one_recheck_recorded_at_once_by_four_workers_moves_the_takedown_once(self, sessions: sessionmaker):
        """A re-check service resumed beside its old self: the same check id, four times at once."""
        from mimamori.services import takedowns
        from mimamori.stores.takedowns import TakedownTransition

        work = Workspace(load_settings("local"), sessions)
        with sessions.begin() as session:
            session.add(Case(id="c1", display_name="C.", created_by="staff"))
        made = takedowns.create_takedown(work, Actor("staff", "operator"), "c1", "https://x.example/1")
        start, results = threading.Barrier(4), []

        def check(n: int) -> None:
            start.wait()
            results.append(takedowns.record_recheck(work, made.id, "check-1", "gone", {"worker": n}, utcnow()))

        threads = [threading.Thread(target=check, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.repeat for r in results) == [False, True, True, True]
        assert {r.state_after for r in results} == {"removed"}
        with sessions() as session:
            moves = [(t.from_state, t.to_state, t.check_id) for t in session.scalars(select(TakedownTransition))]
        assert moves == [("draft", "removed", "check-1")]

    # -- issue 22 (R2): a backup's dump loads back whole, past the triggers that guard actions --
    @pytest.fixture
    def fresh_database_url(self, database_url: str) -> str:
        """A second, empty database on the same engine (what a restore goes into)."""
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        if url.drivername.startswith("sqlite"):
            return str(url.set(database=url.database.replace(".sqlite3", "-restored.sqlite3")))
        name = f"{url.database}_restored"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return url.set(database=name).render_as_string(hide_password=False)

    def test_a_dump_loads_back_whole_with_the_guarding_triggers_back_in_place(self, sessions: sessionmaker,
                                                                              fresh_database_url: str, tmp_path):
        from mimamori.stores.dumps import dump_tables, load_tables
        from mimamori.stores.takedowns import TRANSITIONS

        engine = sessions.kw["bind"]
        audit.record(sessions, Actor("alice", "reviewer"), "search", case_id="c1", result_count=3)
        with engine.begin() as connection:  # a takedown two transitions past its draft
            takedown_id, state = self._new_takedown(connection), "draft"
            for _ in range(2):
                following = next(s for s in TRANSITIONS[state] if s not in ("removed", state))
                self._move(connection, takedown_id, state, following)
                state = following
        dump = dump_tables(engine, tmp_path / "dump.jsonl.gz")
        assert dump.rows["takedown_transitions"] == 2 and dump.rows["audit_events"] == 1
        target = open_database(fresh_database_url).kw["bind"]
        assert load_tables(target, tmp_path / "dump.jsonl.gz", dump) == dump.rows

        def everything(bound) -> dict:  # typed values (SQLite keeps times as text, formatted by its writer)
            from sqlalchemy import MetaData

            metadata = MetaData()
            with bound.connect() as connection:
                metadata.reflect(connection)
                return {name: [tuple(row) for row in connection.execute(
                            select(metadata.tables[name]).order_by(*metadata.tables[name].primary_key.columns))]
                        for name in ("audit_events", "takedowns", "takedown_transitions")}

        assert everything(target) == everything(engine)
        with target.connect() as connection:
            assert connection.execute(text("select state from takedowns")).scalar() == state
        for statement in ("update audit_events set actor = 'mallory'",  # the guards are back
                          "update takedowns set state = 'draft'", "delete from takedown_transitions"):
            with pytest.raises(DBAPIError), target.begin() as connection:
                connection.execute(text(statement))
        with target.begin() as connection:  # and the sequences moved past the loaded ids
            connection.execute(text(self.TAKEDOWN.replace("/1'", "/2'")))
            assert connection.execute(text("select max(id) from takedowns")).scalar() == takedown_id + 1
