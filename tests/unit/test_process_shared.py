"""What a worker process holds once for all of Beam's copies of a DoFn."""

from mimamori.core.process_shared import ProcessShared


def test_process_shared_makes_once_per_key_and_closes_with_the_last_user():
    closed: list[str] = []
    held: ProcessShared[str] = ProcessShared(closed.append)
    assert held.acquire("k", lambda: "one") == "one"
    assert held.acquire("k", lambda: "two") == "one"
    held.release("k")
    assert closed == [] and held.users("k") == 1
    held.release("k")
    assert closed == ["one"] and held.users("k") == 0
    assert held.acquire("k", lambda: "three") == "three"
