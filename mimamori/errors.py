"""Refusals of case actions, each with the HTTP status the API answers with.

Kept apart from the case logic so the CLI can catch them without importing the stores.
"""

from __future__ import annotations


class CaseError(Exception):
    """A refused case action; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        # Set once an audit row says so, so the API's error handler does not write a second one.
        self.audited = False


class UnknownCase(CaseError):
    status = 404


class CaseExists(CaseError):
    status = 409


class ConsentMissing(CaseError):
    status = 409


class PhotoRejected(CaseError):
    status = 422
