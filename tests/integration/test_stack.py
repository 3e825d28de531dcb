"""The local stack itself: idempotent `up`, health, loopback-only sockets, clean `down`, durable data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

from mimamori.stack.sockets import listeners
from mimamori.stores.milvus import connect
from tests.conftest import unique

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mimamori.cli", *args], capture_output=True, text=True,
                          timeout=300)


def _all_pids(stack) -> dict[str, int]:
    pids = {}
    for service in stack.services:
        for name, pid in service.pids().items():
            assert pid is not None, f"{name} is not running"
            pids[name] = pid
    return pids


def test_up_on_a_running_stack_is_a_fast_no_op(stack):
    before = _all_pids(stack)
    began = time.monotonic()
    result = _cli("stack", "up")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "already running, nothing changed" in result.stdout
    assert _all_pids(stack) == before
    assert elapsed < 5, f"second `stack up` took {elapsed:.1f} s"


def test_status_reports_each_component_healthy_with_its_pid(stack):
    result = _cli("stack", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(report) == {"kafka", "minio", "milvus", "exporter", "rechecks", "prometheus", "prism"}
    for name in ("kafka", "minio", "milvus", "exporter", "rechecks", "prometheus"):
        assert report[name]["healthy"], report[name]
        assert all(isinstance(pid, int) for pid in report[name]["pids"].values())
    assert Path(report["prism"]["detail"].split()[-1]).exists()


def _net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def _interfaces(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines]


def test_every_listening_socket_of_the_stack_is_on_loopback(stack):
    host_namespace = _net_namespace(os.getpid())
    checked = 0
    for name, pid in _all_pids(stack).items():
        sockets = listeners(pid)
        assert sockets, f"{name} listens on nothing?"
        if _net_namespace(pid) == host_namespace:
            wide = [s for s in sockets if not s.loopback]
            assert not wide, f"{name} listens beyond loopback: {wide}"
        else:
            # Milvus binds every interface of its private namespace, whose only interface is lo:
            # from the host it is reachable only through the bridge, checked on its own line.
            assert _interfaces(pid) == ["lo"], f"{name}'s namespace has {_interfaces(pid)}"
        checked += len(sockets)
    assert checked >= 6


def test_down_stops_every_stack_process_and_milvus_data_survives_a_restart(stack, settings):
    alias = connect(settings)
    name = unique("test_durable", "_")
    schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                               FieldSchema("v", DataType.FLOAT_VECTOR, dim=8)])
    collection = Collection(name, schema, using=alias)
    vectors = np.random.default_rng(7).random((100, 8), dtype=np.float32)
    collection.insert([list(range(100)), vectors])
    collection.flush()

    pids = _all_pids(stack)
    result = _cli("stack", "down")
    assert result.returncode == 0, result.stderr
    try:
        for name_, pid in pids.items():
            alive = Path(f"/proc/{pid}/stat").exists() and \
                Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
            assert not alive, f"{name_} (pid {pid}) still runs after `stack down`"
        status = _cli("stack", "status")
        assert status.returncode == 1 and "not running" in status.stdout
    finally:
        assert _cli("stack", "up").returncode == 0

    from mimamori.stores.milvus import disconnect

    disconnect(settings)
    alias = connect(settings)
    collection = Collection(name, using=alias)
    collection.create_index("v", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
    collection.load()
    rows = collection.query("id >= 0", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == 100
    utility.drop_collection(name, using=alias)
