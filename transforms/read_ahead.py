"""Read ahead: a stage's work for the next elements of a bundle, done while the stages below work.

The pipeline is one fused stage: each element goes through fetch, decode, dedupe, detection,
alignment, embedding and the writes before the next one starts, in one thread. Fetching from
MinIO, decoding, the pHash, the dedupe lookups in Milvus and PDQ are a quarter of that time and
mostly wait on a socket or run in C without the interpreter lock, so they can run for the next
elements on another core while detection runs for this one (docs/pipeline.md, "Read-ahead").

``ReadAhead`` wraps a ``Stage``: each element's ``Stage.outputs`` runs in one background thread,
in arrival order, and the outputs are passed on in the same order, each with its own element's
timestamp and window, as soon as they are ready and a newer element arrives, or when more than
``depth`` elements are waiting. ``finish_bundle`` passes on everything left, before the stages
below finish theirs (Beam finishes a fused stage's operations from the top), so a bundle still
ends with every element handled and its offsets are committed after that, as before. An error
that must fail the bundle (an outage past its patience, a broken installation) is raised in the
bundle's thread when its element's turn comes. The time the bundle's thread waits for a result
is ``mimamori_read_ahead_wait_seconds{stage}``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from mimamori.core import metrics
from mimamori.transforms.stage import Stage, counted


class ReadAhead(beam.DoFn):
    """``stage`` with its work for up to ``depth`` later elements done in a background thread."""

    def __init__(self, stage: Stage, depth: int):
        if depth < 1:
            raise ValueError(f"read-ahead depth must be at least 1, not {depth}")
        self.stage = stage
        self.depth = depth

    def setup(self) -> None:
        self.stage.setup()
        # One thread: the stage sees its elements one at a time and in order, as without read-ahead.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"read-ahead-{self.stage.stage}")
        self._waiting: deque[tuple[WindowedValue, Future]] = deque()

    def start_bundle(self) -> None:
        # A failed bundle's leftovers are not this bundle's: stopped before the stage starts afresh.
        leftovers = [future for _, future in self._waiting]
        self._waiting.clear()
        for future in leftovers:
            future.cancel()
        wait(leftovers)
        self.stage.start_bundle()

    def process(self, element: Any, windowed=beam.DoFn.WindowedValueParam,
                window=beam.DoFn.WindowParam) -> Iterator[Any]:
        # ``window`` is unused, but asking for it makes Beam call this once per window of an element
        # in several, so ``windowed`` holds one window and its outputs are not multiplied.
        self._waiting.append((windowed, self._pool.submit(self.stage.outputs, element)))
        # One out for one in: passing on every finished element at once would leave nothing in
        # work, and the next few arrivals would then wait for theirs.
        if len(self._waiting) > self.depth or self._waiting[0][1].done():
            yield from self._pass_on(*self._waiting.popleft())

    def finish_bundle(self) -> Iterator[Any]:
        while self._waiting:
            yield from self._pass_on(*self._waiting.popleft())
        yield from self.stage.finish_bundle() or ()

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.stage.teardown()

    def _pass_on(self, windowed: WindowedValue, outputs: Future) -> Iterator[Any]:
        if not outputs.done():
            began = time.perf_counter()
            wait((outputs,))
            metrics.READ_AHEAD_WAIT_SECONDS.labels(stage=self.stage.stage).inc(time.perf_counter() - began)
        # Outputs carry their own element's timestamp and window: they leave after newer elements came in.
        for output in counted(outputs.result()):
            if isinstance(output, pvalue.TaggedOutput):
                yield pvalue.TaggedOutput(output.tag, windowed.with_value(output.value))
            else:
                yield windowed.with_value(output)


def read_ahead(stage: Stage, depth: int) -> beam.DoFn:
    """``stage`` reading ahead by ``depth`` elements; the stage itself where ``depth`` is 0."""
    return ReadAhead(stage, depth) if depth else stage
