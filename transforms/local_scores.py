"""ScoreLocalFeatures: a new picture's crop-robust scores, computed ahead of the writer.

The writer decides each (case, media) pair on its PDQ distance and its local-feature score
(services/image_matches.py). That score is the dearest part of the image signals: the picture's
ORB keypoints and their verified matches against every reference image of a watched case (tens
of milliseconds a picture against 20 references). In the writer it runs at the bundle's end, on
the pipeline's path; here it runs in a read-ahead thread beside detection (docs/pipeline.md,
"Read-ahead"), for images that were not deduplicated away.

The writer takes these scores where its own gallery of reference images is built from the same
references, and computes them itself otherwise (a case enrolled, withdrawn or given new
references in between), so the decision is the same either way. The stage is in the graph only
where ``matching.local_features`` is on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from mimamori.core.config import Settings
from mimamori.core.retry import is_outage
from mimamori.models.embedders import embedder_version
from mimamori.transforms.backends import PRODUCTION, Backends
from mimamori.transforms.elements import MediaItem, hashed_media
from mimamori.transforms.stage import Stage

log = logging.getLogger(__name__)


class ScoreLocalFeatures(Stage):
    stage = "local_scores"

    def __init__(self, settings: Settings, backends: Backends = PRODUCTION):
        self.settings = settings
        self.backends = backends

    def setup(self) -> None:
        self.watchlist = self.backends.watchlist(self.settings, embedder_version(self.settings.models.embedder))

    def start_bundle(self) -> None:
        self.watched: dict[str, float] | None = None  # read once a bundle, as the writer reads them

    def handle(self, item: MediaItem) -> Iterator[MediaItem]:
        if item.media.kind == "image":
            if self.watched is None:
                self.watched = self.watchlist.watched_cases()
            try:
                item.local_scores = self.watchlist.local_scores(hashed_media(item), self.watched)
            except Exception as error:
                if is_outage(error):
                    raise  # tried again by Stage while the service is away
                # Not the picture's fault, and no reason to lose its faces: the writer scores it itself.
                log.warning("local-feature scores of %s left to the writer: %r", item.event.media_id, error)
        yield item
