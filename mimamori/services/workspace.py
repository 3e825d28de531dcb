"""What the services share: the settings, the case database, and clients built on first use.

One ``Workspace`` lives as long as its front door: the API builds one at start-up, a CLI
command one per run. Models and store clients are built lazily, so the API starts without
loading a face model and a command that only lists matches never connects to Milvus.
Its methods are the services' one seam to the outside: the unit tests subclass it with
in-memory stores (tests/support/workspace.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import sessionmaker

from mimamori.core.config import EmbedderConfig, Settings
from mimamori.stores.cases import open_database
from mimamori.stores.enrolled import EnrolledFaces
from mimamori.stores.face_search import FaceSearch
from mimamori.stores.image_hashes import MediaHashes, ReferenceHashes
from mimamori.stores.objects import ensure_bucket, object_client

if TYPE_CHECKING:
    from mimamori.models.face_encoder import FaceEncoder


class Workspace:
    def __init__(self, settings: Settings, sessions: sessionmaker | None = None):
        self.settings = settings
        self.sessions = sessions or open_database(settings.database_url())
        self._encoders: dict[str, FaceEncoder] = {}
        self._enrolled: dict[str, EnrolledFaces] = {}
        self._objects = None
        self._searcher: FaceSearch | None = None
        self._model_searchers: dict[str, FaceSearch] = {}
        self._reference_hashes: ReferenceHashes | None = None
        self._media_hashes: MediaHashes | None = None

    @property
    def model(self) -> str:
        """The configured embedder: the model the pipeline indexes and enrols with."""
        return self.settings.models.embedder.name

    def encoder_for(self, model: str | None = None) -> FaceEncoder:
        """The detect-align-embed path for a model (default: the configured one), built once."""
        from mimamori.models.face_encoder import FaceEncoder  # torch: loaded when a face is first needed

        model = model or self.model
        if model not in self._encoders:
            config = self.settings.models.embedder
            if model != config.name:
                config = EmbedderConfig(name=model, allow_random_weights=config.allow_random_weights)
            self._encoders[model] = FaceEncoder(self.settings, config)
        return self._encoders[model]

    def enrolled_for(self, model: str | None = None) -> EnrolledFaces:
        """The enrolled-faces collection of a model (default: the configured one)."""
        model = model or self.model
        if model not in self._enrolled:
            self._enrolled[model] = EnrolledFaces(self.settings, model)
        return self._enrolled[model]

    @property
    def reference_hashes(self) -> ReferenceHashes:
        """The cases' reference PDQ hashes (issue 20), built once."""
        if self._reference_hashes is None:
            self._reference_hashes = ReferenceHashes(self.settings)
        return self._reference_hashes

    @property
    def media_hashes(self) -> MediaHashes:
        """The scraped frames' PDQ hashes (the retro search of a new reference), built once."""
        if self._media_hashes is None:
            self._media_hashes = MediaHashes(self.settings)
        return self._media_hashes

    def searcher_for(self, model: str) -> FaceSearch:
        """A searcher of one model's face collection, whatever the search alias points to."""
        return FaceSearch(self.settings, model=model)

    def enrolled_models(self) -> list[str]:
        """The registered models that have an enrolled collection (a case may be in each)."""
        from pymilvus import utility

        from mimamori.models.registry import EMBEDDERS
        from mimamori.stores.milvus import connect

        alias = connect(self.settings)
        return [m for m in EMBEDDERS if utility.has_collection(self.settings.enrolled_collection(m), using=alias)]

    @property
    def objects(self):
        """The object store client, with the reference-photo bucket in place."""
        if self._objects is None:
            self._objects = object_client(self.settings)
            ensure_bucket(self._objects, self.settings.minio.buckets.references)
        return self._objects

    def searcher_of_version(self, model_version: str | None) -> FaceSearch:
        """The searcher of the model that made a match (``Match.model_version``), built once per model.

        The search alias may have moved to another model since the match was made; the match's face
        is in its own model's collection. A version no registered model has: the search alias's.
        """
        name = model_of_version(model_version)
        alias = self.searcher
        if name is None or name == alias.model:
            return alias
        if name not in self._model_searchers:
            self._model_searchers[name] = self.searcher_for(name)
        return self._model_searchers[name]

    @property
    def searcher(self) -> FaceSearch:
        """The searcher of the search alias, shared by every request (it follows promote/rollback)."""
        if self._searcher is None:
            self._searcher = FaceSearch(self.settings)
        return self._searcher


def model_of_version(model_version: str | None) -> str | None:
    """The registered model whose faces carry ``model_version`` (``spec.version``, then ``@weights``), if any."""
    from mimamori.models.registry import EMBEDDERS

    base = (model_version or "").split("@", 1)[0]
    return next((spec.name for spec in EMBEDDERS.values() if spec.version == base), None)
