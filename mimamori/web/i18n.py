"""The workbench's languages: English and Japanese gettext catalogs, compiled when first used.

The catalogs are Babel ``.po`` files (``i18n/<language>/LC_MESSAGES/messages.po``), read and
compiled in memory, so there is no ``.mo`` file to forget to rebuild. Strings of Python code
shown on a page are marked with ``N_`` and translated where the template shows them.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("en", "ja")
CATALOGS = Path(__file__).resolve().parent / "i18n"


def N_(message: str) -> str:
    """Mark a message for the catalogs; it is translated where a template shows it."""
    return message


def catalog_path(language: str) -> Path:
    return CATALOGS / language / "LC_MESSAGES" / "messages.po"


@cache
def translations(language: str) -> Translations:
    """The compiled catalog of ``language`` (one of LANGUAGES)."""
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain="messages")
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain="messages")


def from_accept_language(header: str | None) -> str | None:
    """The first of LANGUAGES the browser asks for (by q-value), if any."""
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = tag.strip().lower().split("-")[0]
        if language in LANGUAGES and quality > 0:
            wanted.append((-quality, position, language))
    return min(wanted)[2] if wanted else None
