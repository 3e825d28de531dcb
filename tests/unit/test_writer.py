"""The writer's pause for Milvus's index backlog: when it waits, and for how long (no server needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pymilvus import DataType

from mimamori.stores.media import NO_PAGE_URL, page_url_from_store, stored_page_url
from mimamori.stores.writer import IndexGate, MilvusWriter


class ScriptedGate(IndexGate):
    """An IndexGate that reads the backlog from a script instead of Milvus."""

    def __init__(self, backlogs: list[int | None], **kwargs):
        super().__init__(SimpleNamespace(name="scripted"), **kwargs)
        self.backlogs = backlogs
        self.reads = 0

    def unindexed_rows(self) -> int | None:
        self.reads += 1
        return self.backlogs.pop(0) if self.backlogs else 0


def test_gate_waits_while_the_backlog_is_over_the_bound():
    gate = ScriptedGate([900, 700, 100], max_unindexed_rows=500, check_s=0.01)
    gate.wait()
    assert gate.reads == 3  # over, over, under: two pauses
    assert gate.waited_s >= 0.02


def test_gate_checks_at_most_once_per_interval():
    gate = ScriptedGate([0, 0], max_unindexed_rows=500, check_s=60)
    gate.wait()
    gate.wait()
    assert gate.reads == 1
    assert gate.waited_s == 0


def test_gate_lets_writes_through_without_a_vector_index():
    gate = ScriptedGate([None], max_unindexed_rows=1, check_s=0.01)
    gate.wait()
    assert gate.reads == 1
    assert gate.waited_s == 0


@pytest.mark.parametrize("kwargs", [{"request_bytes": 0}, {"in_flight": 0}, {"max_unindexed_rows": 0}])
def test_writer_rejects_settings_that_would_never_write(kwargs):
    with pytest.raises(ValueError):
        MilvusWriter(SimpleNamespace(name="unused"), **kwargs)


class RecordingCollection:
    """Just enough of a pymilvus Collection for the writer: a schema and an upsert that records."""

    def __init__(self, fields: dict[str, DataType]):
        self.name = "recording"
        self.schema = SimpleNamespace(fields=[SimpleNamespace(name=n, dtype=t) for n, t in fields.items()])
        self.upserted: list[dict] = []

    def upsert(self, rows, **_options):
        self.upserted.extend(rows)


def test_writer_refuses_empty_text_that_milvus_could_not_map():
    collection = RecordingCollection({"id": DataType.INT64, "page_url": DataType.VARCHAR})
    writer = MilvusWriter(collection, max_unindexed_rows=None)
    with pytest.raises(ValueError, match=r"recording\.page_url is empty.*milvus#31406"):
        writer.write([{"id": 1, "page_url": ""}])
    writer.write([{"id": 2, "page_url": stored_page_url(None)}, {"id": 3, "page_url": "https://a.example/p"}])
    writer.close(flush=False)
    assert collection.upserted == [{"id": 2, "page_url": NO_PAGE_URL}, {"id": 3, "page_url": "https://a.example/p"}]
    assert [page_url_from_store(row["page_url"]) for row in collection.upserted] == ["", "https://a.example/p"]
    assert page_url_from_store("") == ""  # rows written before the marker read the same


def test_writers_of_one_collection_in_a_process_share_its_upsert_threads():
    """Beam's second copy of a writing DoFn adds no threads; the last writer's close ends them."""
    first = MilvusWriter(RecordingCollection({"id": DataType.INT64}), max_unindexed_rows=None)
    second = MilvusWriter(RecordingCollection({"id": DataType.INT64}), max_unindexed_rows=None)
    assert first._pool is second._pool
    first.write([{"id": 1}])
    first.close(flush=False)
    first.close(flush=False)  # twice: still one release
    second.write([{"id": 2}])
    assert second.wait() == 1  # the shared threads still run
    second.close(flush=False)
    with pytest.raises(RuntimeError):
        second._pool.submit(print)  # shut down with the last writer
