"""ReadAhead (transforms/read_ahead.py): a stage run a few elements ahead, with nothing reordered or lost."""

from __future__ import annotations

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue

from mimamori.core.errors import InvalidInput, Misconfigured
from mimamori.streams.events import KafkaRecord
from mimamori.transforms.read_ahead import ReadAhead, read_ahead
from mimamori.transforms.stage import DEAD_LETTER, Stage
from mimamori.transforms.totals import run_totals


def record(offset: int) -> KafkaRecord:
    return KafkaRecord("media.scraped", 0, offset, 1_000 * offset, f"m{offset}".encode(), b"{}")


class Tagging(Stage):
    """Yields (offset, thread name); offsets divisible by 5 are bad input."""

    stage = "tagging"

    def __init__(self, fail_on: int | None = None):
        self.fail_on = fail_on

    def start_bundle(self) -> None:
        self.started = time.perf_counter()

    def handle(self, element: KafkaRecord):
        if element.offset == self.fail_on:
            raise Misconfigured("a broken installation")
        time.sleep(0.002 * (element.offset % 3))
        if element.offset % 5 == 0:
            raise InvalidInput("unreadable", f"offset {element.offset} is broken")
        yield element.offset, threading.current_thread().name


def stamped(value, timestamp=beam.DoFn.TimestampParam, win=beam.DoFn.WindowParam):
    offset, thread = value
    yield offset, float(timestamp), float(win.start), thread.startswith("read-ahead-tagging")


def test_outputs_keep_their_own_timestamps_and_windows_and_dead_letters_are_counted():
    pipeline = BeamTestPipeline()
    timed = (pipeline
             | beam.Create([window.TimestampedValue(record(n), n * 10) for n in range(1, 23)])
             | beam.WindowInto(window.FixedWindows(60)))
    outputs = timed | beam.ParDo(ReadAhead(Tagging(), depth=3)).with_outputs(DEAD_LETTER, main="main")
    expected = [(n, n * 10.0, float(n * 10 // 60 * 60), True) for n in range(1, 23) if n % 5]
    assert_that(outputs.main | beam.ParDo(stamped), equal_to(expected))
    letters = outputs[DEAD_LETTER] | beam.Map(lambda letter: (letter.reason, letter.media_id))
    assert_that(letters, equal_to([("unreadable", f"m{n}") for n in (5, 10, 15, 20)]), label="letters")
    result = pipeline.run()
    result.wait_until_finish()
    # Beam's counter (a replay's totals), counted in the bundle's thread: a read-ahead thread's would be lost.
    assert run_totals(result).get("dead_letters.unreadable") == 4


def test_an_element_in_two_windows_is_passed_on_once_in_each():
    with BeamTestPipeline() as pipeline:
        timed = (pipeline
                 | beam.Create([window.TimestampedValue(record(n), n * 10) for n in (1, 2, 4)])
                 | beam.WindowInto(window.SlidingWindows(60, 30)))
        outputs = timed | beam.ParDo(ReadAhead(Tagging(), depth=2)).with_outputs(DEAD_LETTER, main="main")
        expected = [(n, n * 10.0, start, True) for n in (1, 2, 4) for start in (n * 10 // 30 * 30 - 30.0,
                                                                                  n * 10 // 30 * 30 + 0.0)]
        assert_that(outputs.main | beam.ParDo(stamped), equal_to(expected))


def test_no_more_than_depth_elements_wait_and_the_bundle_ends_with_all_of_them_in_order():
    dofn = ReadAhead(Tagging(), depth=2)
    dofn.setup()
    dofn.start_bundle()
    outputs = []  # one an element: its result or its dead letter
    for n in range(1, 10):
        outputs += dofn.process(record(n), windowed=WindowedValue(record(n), n, [window.GlobalWindow()]),
                                window=window.GlobalWindow())
        assert n - len(outputs) <= 2
    outputs += dofn.finish_bundle() or ()
    dofn.teardown()
    passed_on = [out for out in outputs if not isinstance(out, beam.pvalue.TaggedOutput)]
    assert [(out.value[0], out.timestamp.micros) for out in passed_on] == [
        (n, n * 1_000_000) for n in range(1, 10) if n % 5]
    assert [out.value.value.media_id for out in outputs if isinstance(out, beam.pvalue.TaggedOutput)] == ["m5"]


class Slow(Stage):
    stage = "slow"

    def __init__(self):
        self.handled: list[tuple[int, float]] = []

    def start_bundle(self) -> None:
        self.started = time.perf_counter()

    def handle(self, element: KafkaRecord):
        time.sleep(0.2)
        self.handled.append((element.offset, time.perf_counter()))
        yield element.offset


def test_a_failed_bundles_leftovers_are_stopped_before_the_next_bundle_starts():
    dofn = ReadAhead(Slow(), depth=4)
    dofn.setup()
    dofn.start_bundle()
    for n in (1, 2, 3):  # the bundle fails here: nothing passed on, three elements in the read-ahead
        list(dofn.process(record(n), windowed=WindowedValue(record(n), n, [window.GlobalWindow()]),
                          window=window.GlobalWindow()))
    dofn.start_bundle()  # the next bundle
    handled = [offset for offset, _ in dofn.stage.handled]
    assert handled == [1]  # the one under way finished; the others never ran
    assert dofn.stage.handled[0][1] <= dofn.stage.started  # and it finished before the stage started afresh
    assert list(dofn.finish_bundle()) == []
    dofn.teardown()


def test_a_failure_that_must_fail_the_bundle_is_raised_in_the_bundle():
    with pytest.raises(Exception, match="a broken installation"), BeamTestPipeline() as pipeline:
        (pipeline | beam.Create([record(n) for n in range(1, 6)])
         | beam.ParDo(ReadAhead(Tagging(fail_on=3), depth=4)).with_outputs(DEAD_LETTER, main="main"))


def test_depth_zero_is_the_stage_in_line():
    stage = Tagging()
    assert read_ahead(stage, 0) is stage
    assert isinstance(read_ahead(stage, 4), ReadAhead)
    with pytest.raises(ValueError):
        ReadAhead(stage, 0)
