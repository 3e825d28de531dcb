"""The unit tier's guard (tests/support/hermetic.py) refuses what it should, and remembers it."""

import contextlib
import socket
import subprocess

import pytest

from tests.support.hermetic import CLOSED_PORT, HermeticViolation, refuse_network_and_processes


def test_connections_and_programs_are_refused_and_remembered_even_when_caught(tmp_path):
    # A guard inside the tier's own: what it refuses never reaches the outer one.
    with refuse_network_and_processes() as tried:
        with pytest.raises(HermeticViolation, match="tests/contract"):
            socket.create_connection(("127.0.0.1", CLOSED_PORT), timeout=1)
        with contextlib.suppress(HermeticViolation):  # code that swallows errors hides nothing
            subprocess.run(["true"], check=False)
        with socket.socket(socket.AF_UNIX) as unix, pytest.raises(FileNotFoundError):
            unix.connect(str(tmp_path / "no-such-socket"))  # Unix sockets stay on this machine
    assert tried == [f"connect to ('127.0.0.1', {CLOSED_PORT})", "start the program ['true']"]


def test_offline_settings_point_every_service_at_a_closed_port(offline_settings, tmp_path):
    closed = f"127.0.0.1:{CLOSED_PORT}"
    assert offline_settings.kafka.bootstrap_servers == closed and offline_settings.minio.endpoint == closed
    assert offline_settings.milvus.uri == f"http://{closed}"
    assert offline_settings.database_url().startswith(f"sqlite:///{tmp_path}")
