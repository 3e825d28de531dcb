"""Pages on paths the JSON API answers too (``/cases/{id}``, ``/search``, ``/audit``...): a browser
gets the page, a machine the API's JSON, by what the request asks for.

A request is a browser's when it asks for HTML (``Accept: text/html``, as every navigation and
form post does) and carries no ``Authorization`` header (API keys do). Everything else goes to
the API's route of the same path, unchanged.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


def wants_page(scope: Scope) -> bool:
    accept, authorised = b"", False
    for name, value in scope.get("headers", []):
        if name == b"accept":
            accept += value
        elif name == b"authorization":
            authorised = True
    return not authorised and b"text/html" in accept


class PageRoute(APIRoute):
    """A page route that matches browsers only (see the module's docstring); put before the API's routes."""

    def matches(self, scope: Scope) -> tuple[Match, dict[str, Any]]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not wants_page(scope):
            return Match.NONE, {}
        return match, child
