"""Skip media that is already indexed: an exact or near duplicate becomes a sighting only.

Exact: the same sha256. Near: a perceptual hash within a few bits and the same aspect
ratio (re-encoded or resized copies). A replay of the first upload itself is a sighting too,
unless ``pipeline.reprocess_indexed`` asks for it to be processed again. Edits that change the
layout (crops, mirrors, borders) are new media: their faces are indexed and found by face
search instead.

Media that goes on to be indexed leaves here with the PDQ hash of each of its frames
(``MediaItem.pdq``, what the writer stores and the image-hash watchlist searches); hashing
it here rather than at decoding spares the sightings a hash they never use. Large pictures are
hashed scaled to fit ``matching.scraped_pdq_max_side`` (mimamori.media.pdq).
"""

from __future__ import annotations

from collections.abc import Iterator

from apache_beam import pvalue

from mimamori.core import metrics
from mimamori.core.config import Settings
from mimamori.media.pdq import frame_hashes
from mimamori.stores.media import KnownMedia
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.elements import MediaItem
from mimamori.transforms.stage import Stage

SIGHTING = "sighting"


class Dedupe(Stage):
    stage = "dedupe"
    store = "milvus"

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION):
        self.settings = settings
        self.reprocess = settings.pipeline.reprocess_indexed
        self.pdq_max_side = settings.matching.scraped_pdq_max_side
        self.backends = backends

    def setup(self) -> None:
        self.index = self.backends.media_index(self.settings)

    def start_bundle(self) -> None:
        # Media of this bundle is not written yet: remember it, so two copies of one file in
        # one bundle make one original and one sighting.
        self.in_bundle: dict[str, str] = {}

    def handle(self, item: MediaItem) -> Iterator:
        sha = item.media.sha256
        if sha in self.in_bundle and self.in_bundle[sha] != item.event.media_id:
            known = KnownMedia(sha, "exact", 0)
        else:
            known = self.index.find(sha, item.event.media_id, item.phash, item.media.width, item.media.height)
        if known is not None and self.reprocess and known.match == "original":
            known = None  # a replay after a fix: through detection again (see PipelineConfig)
        if known is not None:
            item.known = known
            metrics.DEDUPE_HITS.labels(match=known.match).inc()
            yield pvalue.TaggedOutput(SIGHTING, item)
            return
        self.in_bundle[sha] = item.event.media_id
        # The PDQ of every frame (issue 20), for media that is indexed: a sighting's would be thrown away.
        item.pdq = frame_hashes(((frame.time_ms, frame.image) for frame in item.media.frames), self.pdq_max_side)
        yield item
