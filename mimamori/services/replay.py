"""Replays (backfills): what to read again, with which model, and what the run did.

The Beam job itself is run by the front door (it builds the pipeline from the transforms
layer, above this one); this module plans the replay (offsets per partition from
``offsets_for_times``, a consumer group of its own) and sums up the workers' totals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mimamori.core.config import Settings
from mimamori.models.registry import embedder_spec
from mimamori.streams.replay import ReplayPlan, plan_replay


@dataclass(frozen=True)
class ReplayRequest:
    start: dt.datetime
    stop: dt.datetime
    topic: str | None = None
    model: str | None = None  # embed with this model (its own collection); default: the configured one
    reprocess: bool = False  # process media already indexed again


def prepare_replay(settings: Settings, request: ReplayRequest) -> tuple[Settings, ReplayPlan, str]:
    """Settings for the replay's run (model, reprocessing), its plan, and the topic read."""
    settings = settings.model_copy(deep=True)
    if request.model:
        embedder_spec(request.model)  # an unknown model is an error before anything runs
        settings.models.embedder.name = request.model
    settings.pipeline.reprocess_indexed = request.reprocess
    topic = request.topic or settings.kafka.topics.media_scraped.name
    return settings, plan_replay(settings, topic, request.start, request.stop), topic


def describe_totals(totals: dict[str, int]) -> str:
    """One line from the workers' counters (``transforms.totals.run_totals``)."""
    media = sum(v for k, v in totals.items() if k.startswith("media."))
    sightings = sum(v for k, v in totals.items() if k.startswith("media.sighting"))
    letters = {k.split(".", 1)[1]: v for k, v in totals.items() if k.startswith("dead_letters.")}
    return (f"replay done: {media} media ({sightings} sightings), {totals.get('faces', 0)} faces "
            f"written, {sum(letters.values())} dead letters" + (f" {letters}" if letters else ""))
