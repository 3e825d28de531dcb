"""The writer's pause for Milvus's index backlog: when it waits, and for how long (no server needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from stores.writer import IndexGate, MilvusWriter


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
