import json

import pytest

from mimamori.streams.events import DeadLetter, EventError, KafkaRecord, MediaEvent, now_utc


def _event(**changes) -> MediaEvent:
    fields = dict(media_id="site:1", source_url="https://example.test/a.jpg", platform="example",
                  scraped_at=now_utc(), content_type="image/jpeg", object_key="raw/ab/abc")
    fields.update(changes)
    return MediaEvent(**fields)


def test_an_event_round_trips():
    event = _event(posted_at="2026-01-02T03:04:05Z", sha256="a" * 64)
    assert MediaEvent.from_json(event.to_json()) == event
    assert event.posted_at_epoch == 1767323045


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b"[1]", "malformed_json"),
    (json.dumps({"schema_version": 2}).encode(), "unsupported_schema_version"),
    (json.dumps({"media_id": "x"}).encode(), "unsupported_schema_version"),
    (json.dumps({"schema_version": 1, "media_id": "x"}).encode(), "schema_invalid"),
])
def test_bad_events_name_their_reason(raw, reason):
    with pytest.raises(EventError) as raised:
        MediaEvent.from_json(raw)
    assert raised.value.reason == reason


def test_a_producer_cannot_send_an_invalid_event():
    with pytest.raises(EventError):
        _event(media_id="has spaces").to_json()
    with pytest.raises(EventError):
        _event(sha256="not-a-hash").to_json()


def test_a_dead_letter_carries_the_original_message():
    record = KafkaRecord("media.scraped", 2, 41, 1700000000000, b"site:1", b"\x00binary")
    letter = DeadLetter("corrupt_image", "decode", "cannot decode", record.describe(), "site:1")
    back = DeadLetter.from_json(letter.to_json())
    assert back.original["offset"] == 41 and back.original["value_base64"] == "AGJpbmFyeQ=="

