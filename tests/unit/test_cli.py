"""The CLI as a front door: the same services as the API, the error family mapped to exit codes.

Only commands that need nothing but the case database run here (on SQLite); the others are
exercised against the real stack in tests/integration.
"""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import select

from mimamori.cli.main import exit_code, main
from mimamori.core import errors
from mimamori.stores.cases import AuditEvent, open_database


@pytest.fixture
def cli(tmp_path):
    site = tmp_path / "site.yaml"
    database = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    site.write_text(yaml.safe_dump({"database": {"url": database}, "stack": {"home": str(tmp_path / "stack")}}))
    return ["--config", str(site)], open_database(database)


def test_case_and_key_commands_go_through_the_services_and_are_audited(cli, capsys):
    args, sessions = cli
    assert main([*args, "cases", "create", "c1", "--name", "Client C."]) == 0
    assert main([*args, "cases", "create", "c1", "--name", "again"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "keys", "create", "--name", "robot", "--role", "reviewer"]) == 0
    assert capsys.readouterr().out.startswith("mmk_")
    assert main([*args, "keys", "revoke", "--name", "robot"]) == 0
    assert main([*args, "keys", "revoke", "--name", "robot"]) == 2
    assert "no key named robot" in capsys.readouterr().err
    assert main([*args, "review", "5", "confirmed"]) == 2
    assert "no match 5" in capsys.readouterr().err
    assert main([*args, "matches", "--case", "c1"]) == 0
    with sessions() as session:
        actions = [(row.action, row.actor.startswith("cli:")) for row in session.scalars(select(AuditEvent))]
    assert actions == [("create_case", True), ("create_case", True), ("create_key", True), ("revoke_key", True),
                       ("revoke_key", True), ("review", True), ("view_matches", True)]
    with sessions() as session:
        outcomes = [row.outcome for row in session.scalars(select(AuditEvent))]
    assert outcomes == ["ok", "rejected", "ok", "ok", "rejected", "rejected", "ok"]


def test_exit_codes_by_kind_of_error():
    assert exit_code(errors.ConsentMissing("consent_missing", "x")) == 2
    assert exit_code(errors.InvalidInput("x")) == 2
    assert exit_code(errors.Unavailable("kafka down")) == 3
    assert exit_code(errors.Misconfigured("no weights")) == 4


def test_user_and_assignment_commands(cli, capsys):
    args, sessions = cli
    assert main([*args, "users", "create", "ada", "--role", "admin"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("http://127.0.0.1:8080/invite/") and len(out.strip().rsplit("/", 1)[1]) >= 43
    assert "shown once" in err
    assert main([*args, "users", "create", "ada", "--role", "admin"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main([*args, "cases", "create", "c1", "--name", "C."]) == 0
    assert main([*args, "cases", "assign", "c1", "ada"]) == 0
    assert main([*args, "cases", "assign", "c1", "nobody"]) == 2
    assert "no staff user or API key named nobody" in capsys.readouterr().err
    assert main([*args, "users", "disable", "ada"]) == 0
    capsys.readouterr()
    assert main([*args, "users", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.split()[:3] == ["ada", "admin", "disabled"] and "cases: c1" in listed
    assert main([*args, "users", "enable", "ada"]) == 0
    assert main([*args, "users", "reset", "ada"]) == 0
    assert "/invite/" in capsys.readouterr().out
    assert main([*args, "cases", "unassign", "c1", "ada"]) == 0
    assert main([*args, "cases", "unassign", "c1", "ada"]) == 2
    with sessions() as session:
        rows = [(row.action, row.outcome) for row in session.scalars(select(AuditEvent))
                if row.action not in ("create_case",)]
    assert rows == [("create_user", "ok"), ("create_user", "rejected"), ("assign", "ok"), ("assign", "rejected"),
                    ("disable_user", "ok"), ("list_users", "ok"), ("enable_user", "ok"), ("reset_user", "ok"),
                    ("unassign", "ok"), ("unassign", "rejected")]
