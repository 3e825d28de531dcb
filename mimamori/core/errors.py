"""One family of errors: every failure mimamori reports to a person has a reason and a sentence.

``reason`` is machine-readable (a dead-letter reason, the API's ``error`` field, what a
script tests for); the message says what happened and what to do. The class says what
kind of failure it is, and each front door maps kinds once: the API to an HTTP status
(``mimamori/api/errors.py``), the CLI to an exit code (``mimamori/cli/main.py``).
Lower layers raise these without knowing about either.
"""

from __future__ import annotations


class MimamoriError(Exception):
    """A failure with a reason code. ``audited`` is set once an audit row records the refusal,
    so that the front door does not write a second one."""

    reason_default = "error"

    def __init__(self, reason_or_message: str, message: str | None = None):
        """``Error(reason, message)``, or ``Error(message)`` with the class's default reason."""
        if message is None:
            reason, message = self.reason_default, reason_or_message
        else:
            reason = reason_or_message
        super().__init__(message)
        self.reason = reason
        self.audited = False

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(MimamoriError, ValueError):
    """The request or file is not acceptable as it is (bad photo, corrupt media, malformed event).

    Also a ``ValueError``, which is what Python code expects of a bad value."""

    reason_default = "invalid_input"


class NotFound(MimamoriError):
    reason_default = "not_found"


class Conflict(MimamoriError):
    """The request contradicts what is on record (a case that exists, consent that does not cover it)."""

    reason_default = "conflict"


class Unauthenticated(MimamoriError):
    reason_default = "unauthenticated"


class Forbidden(MimamoriError):
    reason_default = "forbidden"


class TooLarge(MimamoriError):
    reason_default = "too_large"


class UnsupportedType(MimamoriError):
    reason_default = "unsupported_media_type"


class Unavailable(MimamoriError):
    """A service mimamori needs (Kafka, Milvus, MinIO, the database) is not there or not ready."""

    reason_default = "unavailable"


class Misconfigured(MimamoriError):
    """The installation or configuration cannot work as it is (missing weights, a bad setting)."""

    reason_default = "misconfigured"


# -- cases ------------------------------------------------------------------------------------------
class UnknownCase(NotFound):
    reason_default = "unknown_case"


class CaseExists(Conflict):
    reason_default = "case_exists"


class ConsentMissing(Conflict):
    """No consent in force covers the action: ``consent_missing``, ``consent_expired`` or
    ``consent_out_of_scope``."""

    reason_default = "consent_missing"


class PhotoRejected(InvalidInput):
    reason_default = "photo_rejected"
