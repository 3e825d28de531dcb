import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from mimamori.core.config import load_settings
from mimamori.stack.kafka import KafkaService
from mimamori.stack.process import (
    ManagedProcess,
    StackError,
    children_cpu_seconds,
    children_named,
    port_in_use,
    process_table,
    tree_cpu_seconds,
)


def _managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess(name="sleeper", run_dir=tmp_path / "run", log_dir=tmp_path / "logs")


def test_start_records_pid_and_stop_ends_it(tmp_path: Path):
    proc = _managed(tmp_path)
    pid = proc.start([sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"])
    assert proc.pid() == pid
    assert proc.running()
    assert proc.stop(timeout_s=5)
    assert not proc.running()
    assert not proc.pidfile.exists()
    assert "hello" in proc.log_file.read_text()


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path):
    proc = _managed(tmp_path)
    proc.start([sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    time.sleep(0.3)  # let it install the handler
    began = time.monotonic()
    assert proc.stop(timeout_s=1)
    assert time.monotonic() - began < 10
    assert not proc.running()


def test_a_reused_pid_is_never_taken_for_ours(tmp_path: Path):
    """A pidfile whose PID now belongs to another process (other start time) is stale."""
    proc = _managed(tmp_path)
    proc.run_dir.mkdir(parents=True)
    # PID 1 runs, but it did not start at tick 1: it is not the process we recorded.
    proc.pidfile.write_text(json.dumps({"pid": 1, "start_time": 1, "argv": ["x"]}))
    assert proc.pid() is None
    assert not proc.stop()  # and nothing is signalled
    assert not proc.pidfile.exists()


def test_a_taken_port_is_a_clear_error_naming_it(tmp_path: Path, monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        monkeypatch.setenv("MIMAMORI_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
        monkeypatch.setenv("MIMAMORI_STACK__HOME", str(tmp_path))
        service = KafkaService(load_settings("local"))
        with pytest.raises(StackError, match=f"port {port} \\(kafka broker\\) is already in use"):
            service.start()


def test_a_process_trees_cpu_includes_its_childrens(tmp_path: Path):
    """A parent that sleeps over a child that burns CPU: the tree's seconds are the child's."""
    burn = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(60)"
    script = tmp_path / "parent.py"
    script.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\n"
                      "time.sleep(60)\n")
    parent = ManagedProcess(name="parent", run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    pid = parent.start([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            table = process_table()
            children = [child for child, stat in table.items() if stat.parent == pid]
            if children and table[children[0]].cpu_seconds >= 0.6:
                break
            time.sleep(0.1)
        assert children, "the child never started"
        assert table[pid].cpu_seconds < 0.5
        assert tree_cpu_seconds(table, pid) >= 0.6 + table[pid].cpu_seconds - 0.01
        assert children_named(table, table[children[0]].name, parent=pid) == children
        assert children_named(table, "no-such-program", parent=pid) == []
        assert children_cpu_seconds(table, table[pid].name) >= tree_cpu_seconds(table, pid)  # ours, with its child
    finally:
        parent.stop(timeout_s=5)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, 9)
