"""The shape every per-media stage shares: time it, count it, and turn bad input into dead letters.

A stage yields its results; an exception with a ``reason`` (bad input: a broken file, a
malformed event) becomes a dead letter with that reason, an unexpected exception becomes
one with reason ``internal_error``, and the pipeline goes on. Outages of the services a
stage talks to are not the input's fault: the element is tried again while the service is
away (``core.retry.with_retries``: the wait is announced, counted and timed), and only an
outage longer than the patience fails the bundle, which is then retried with no offset
committed for it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from mimamori.core import metrics
from mimamori.core.errors import InvalidInput, Misconfigured, Unavailable
from mimamori.core.retry import is_outage, with_retries
from mimamori.streams.events import DeadLetter, KafkaRecord
from mimamori.transforms.totals import count_dead_letter

log = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"


def dead_letter(record: KafkaRecord, reason: str, stage: str, error: str, media_id: str | None) -> DeadLetter:
    return DeadLetter(reason=reason, stage=stage, error=error, original=record.describe(), media_id=media_id)


def counted(outputs: list[Any]) -> list[Any]:
    """``outputs``, their dead letters counted: in the bundle's thread, because Beam keeps its
    counters per thread and drops those of a thread it does not know (a read-ahead thread)."""
    for output in outputs:
        if isinstance(output, pvalue.TaggedOutput) and output.tag == DEAD_LETTER:
            count_dead_letter(output.value.reason, output.value.stage)
    return outputs


class Stage(beam.DoFn):
    """A per-element stage; subclasses implement ``handle``."""

    stage = "stage"
    store: str | None = None  # the store ``handle`` reads (None: told by an outage's error type)

    def handle(self, element: Any) -> Iterator[Any]:
        raise NotImplementedError

    def process(self, element: Any) -> Iterator[Any]:
        yield from counted(self.outputs(element))

    def outputs(self, element: Any) -> list[Any]:
        """The element's outputs, its dead letter included (not yet counted: ``counted``); raises
        only what must fail the bundle."""
        # Outputs are collected before they are passed on: in a fused stage, yielding runs the
        # downstream transforms inline, and their time must not count as this stage's.
        try:
            with metrics.stage_timer(self.stage):
                outputs = with_retries(lambda: list(self.handle(element)), f"{self.stage} of {_origin(element)[1]}",
                                       store=self.store, operation=self.stage)
        except (Unavailable, Misconfigured):
            raise  # a broken installation stops the bundle: retried, never dead-lettered
        except Exception as error:
            if is_outage(error):  # an outage longer than the patience: the bundle fails, nothing is lost
                raise
            record, media_id = _origin(element)
            reason = error.reason if isinstance(error, InvalidInput) else None
            if reason is None:
                reason = "internal_error"
                log.warning("%s failed on %s: %s", self.stage, media_id, traceback.format_exc())
            text = f"{type(error).__name__}: {error}"
            outputs = [pvalue.TaggedOutput(DEAD_LETTER, dead_letter(record, reason, self.stage, text, media_id))]
        finally:
            metrics.STAGE_ELEMENTS.labels(stage=self.stage).inc()
        return outputs


def _origin(element: Any) -> tuple[KafkaRecord, str | None]:
    if isinstance(element, KafkaRecord):
        return element, element.key.decode("utf-8", "replace") if element.key else None
    if isinstance(element, tuple):  # (key, item) after keying for inference
        element = element[1]
    return element.record, element.event.media_id
