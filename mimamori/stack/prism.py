"""Prism, Beam's local portable runner, built for the installed apache-beam version.

Beam would otherwise download a Prism release at run time, which this project never
relies on: the binary is built once with ``go install`` and passed as ``--prism_location``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from mimamori.core.config import Settings
from mimamori.stack.install import go_binary

MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"


def beam_version() -> str:
    # From the installed distribution's metadata: importing apache_beam is slow and noisy.
    return importlib.metadata.version("apache-beam")


class PrismRunner:
    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def binary(self) -> Path:
        if self.settings.runner.prism_path:
            return self.settings.runner.prism_path
        version = f"v{beam_version()}"
        return self.settings.stack.cache_dir / "go" / f"prism-{version}" / "prism"

    def install(self) -> Path:
        if self.settings.runner.prism_path:
            return self.settings.runner.prism_path
        return go_binary(MODULE, f"v{beam_version()}", "prism", self.settings.stack.cache_dir)
