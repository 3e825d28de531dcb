"""``mimamori`` commands in subprocesses, pointed at the settings of a private stack.

A private stack (``tests/support/own_stack.py``) is a ``Settings`` object in this process; a
``mimamori`` child (``stack up``, ``run``, ``backup``) reads its settings from files and the
environment. ``site_environment`` writes the settings whole as the site file (0600: they name
the credentials file) and returns the environment that makes a child read exactly them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from mimamori.core.config import SOURCE_ROOT, Settings
from mimamori.stack.service import settings_environment

CLI = [sys.executable, "-m", "mimamori.cli.main"]


def site_environment(settings: Settings) -> dict[str, str]:
    """``MIMAMORI_CONFIG`` and ``MIMAMORI_PROFILE`` for a child that reads ``settings``."""
    return settings_environment(settings, settings.stack.home / "site-settings.yaml")


def child_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own ``MIMAMORI_*`` settings, plus ``environment``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MIMAMORI_")}
    return {**clean, **environment}


def mimamori(environment: Mapping[str, str], *args: str, timeout_s: float = 900,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``mimamori ARGS`` with ``environment``; its output is returned (and its exit checked)."""
    result = subprocess.run([*CLI, *args], env=child_environment(environment), cwd=SOURCE_ROOT,
                            capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"mimamori {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result
