"""What the access log may say: no invitation token, no query string of a sign-in page.

uvicorn's access log (``uvicorn.access``, kept by ``scripts/demo`` and by any deployment's log
collector) writes every request line. An invitation link's token is in its path
(``/invite/{token}``) and works until used, so a log reader could take over the account; the
sign-in pages' queries (``next=...``) name pages and cases. ``RedactSecrets`` replaces both
before a line is formatted; ``mimamori api`` installs it (``uvicorn_log_config``).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
INVITE = re.compile(r"^(/invite/)[^/?#]*")
SIGN_IN_PATHS = re.compile(r"^/(login|login/code|logout|invite/[^/?#]*)$")  # after INVITE's replacement


def redact_path(path: str) -> str:
    """A request's path and query as the access log may show them."""
    path = INVITE.sub(lambda m: m.group(1) + REDACTED, path)
    bare, question, _query = path.partition("?")
    if question and SIGN_IN_PATHS.match(bare):
        return f"{bare}?{REDACTED}"
    return path


class RedactSecrets(logging.Filter):
    """uvicorn's access record (client, method, path with query, HTTP version, status) with the path redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_access_log_filter() -> None:
    """Put the filter on the ``uvicorn.access`` logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with RedactSecrets on the access logger and its handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    config["handlers"]["access"].setdefault("filters", []).append("redact_secrets")
    config["loggers"][ACCESS_LOGGER].setdefault("filters", []).append("redact_secrets")
    return config
