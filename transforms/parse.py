"""Kafka record -> validated media event (or a dead letter saying what is wrong with it)."""

from __future__ import annotations

from collections.abc import Iterator

from mimamori.streams.events import KafkaRecord, MediaEvent
from mimamori.transforms.elements import Incoming
from mimamori.transforms.stage import Stage


class ParseMediaEvent(Stage):
    stage = "parse"

    def handle(self, record: KafkaRecord) -> Iterator[Incoming]:
        yield Incoming(record, MediaEvent.from_json(record.value))
