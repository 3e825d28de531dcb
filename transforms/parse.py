"""Kafka record -> validated media event (or a dead letter saying what is wrong with it)."""

from __future__ import annotations

from collections.abc import Iterator

from streams.events import KafkaRecord, MediaEvent
from transforms.elements import Incoming
from transforms.stage import Stage


class ParseMediaEvent(Stage):
    stage = "parse"

    def handle(self, record: KafkaRecord) -> Iterator[Incoming]:
        yield Incoming(record, MediaEvent.from_json(record.value))
