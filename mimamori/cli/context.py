"""Who a CLI command acts as, and the Workspace it acts in.

A shell on the server is full access, so commands act as ``cli:<user>`` with the role
``operator``; every action still leaves an audit row under that name.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

from mimamori.core.config import Settings

if TYPE_CHECKING:
    from mimamori.services.audit import Actor
    from mimamori.services.workspace import Workspace


def operator() -> Actor:
    from mimamori.services.audit import Actor

    return Actor(f"cli:{getpass.getuser()}", "operator")


def workspace(settings: Settings) -> Workspace:
    from mimamori.services.workspace import Workspace  # its stores load when the command runs

    return Workspace(settings)
