"""The workbench speaks English and Japanese: every string of its templates and of its Python
code shown on a page is in both catalogs, translated; a Japanese user's pages are in Japanese."""

from __future__ import annotations

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from mimamori.core.config import load_settings
from mimamori.web.i18n import CATALOGS, LANGUAGES, catalog_path, from_accept_language, translations
from tests.support.web import cheap_passwords, make_user, signed_in_client
from tests.support.workspace import MemoryWorkspace

WEB = CATALOGS.parent
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "True", "lstrip_blocks": "True"}}
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}


def used_messages() -> set[str]:
    """Every msgid the web package uses (babel's own extractors over the templates and the code)."""
    return {message for _file, _line, message, _comments, _context
            in extract_from_dir(WEB, METHODS, options_map=OPTIONS, keywords=KEYWORDS)}


def catalog(language: str):
    with catalog_path(language).open("rb") as po:
        return read_po(po, locale=language)


def test_every_message_of_the_pages_has_a_japanese_translation():
    used = used_messages()
    assert len(used) > 200
    ja, en = catalog("ja"), catalog("en")
    untranslated = sorted(m for m in used if not (ja.get(m) and ja.get(m).string))
    assert not untranslated, untranslated
    assert not [m.id for m in ja if m.id and m.string == m.id], "English left in the Japanese catalog"
    assert not sorted(m for m in used if not en.get(m)), "messages missing from the English catalog"
    unused = sorted(m.id for m in ja if m.id and m.id not in used)
    assert not unused, f"catalog entries no page uses: {unused}"
    for message in ja:
        if isinstance(message.id, tuple):  # ngettext: every form has the count's placeholder, translated
            assert message.string and all(message.string), message.id
            assert {tuple(sorted(_placeholders(t))) for t in (*message.id, *message.string)} == \
                {tuple(sorted(_placeholders(message.id[0])))}, message.id
        elif message.id and "%(" in message.id:  # the same placeholders, or the page fails to render
            assert sorted(_placeholders(message.id)) == sorted(_placeholders(message.string)), message.id


def _placeholders(text: str) -> list[str]:
    import re
    return re.findall(r"%\(([a-z_]+)\)s", text)


def test_the_catalogs_compile_when_loaded():
    assert set(LANGUAGES) == {"en", "ja"}
    assert translations("ja").gettext("Sign in") == "サインイン"
    assert translations("en").gettext("Sign in") == "Sign in"


def test_the_browser_language_is_chosen_before_sign_in():
    assert from_accept_language("ja-JP,ja;q=0.9,en;q=0.8") == "ja"
    assert from_accept_language("fr-FR, en;q=0.5, ja;q=0.7") == "ja"
    assert from_accept_language("fr") is None and from_accept_language(None) is None


@pytest.fixture
def work(tmp_path, monkeypatch) -> MemoryWorkspace:
    cheap_passwords(monkeypatch)
    work = MemoryWorkspace(load_settings("local"), tmp_path / "cases.sqlite3", {})
    make_user(work, "hana", "reviewer")
    return work



def test_language_per_user_and_per_browser(work):
    from mimamori.services import users
    from mimamori.services.audit import Actor

    client = signed_in_client(work, "hana")
    english = client.get("/queue")
    assert 'lang="en"' in english.text and "My cases" in english.text
    signed = users.signed_in(work, client.cookies.get("mimamori_session"))
    users.set_preferences(work, signed, language="ja")
    page = client.get("/queue")
    assert 'lang="ja"' in page.text and "担当ケース" in page.text and "確認キュー" in page.text
    assert page.headers["content-language"] == "ja"
    assert "サインイン" in signed_in_client(work).get("/login", headers={"Accept-Language": "ja"}).text
    users.set_organisation_settings(work, Actor("root", "operator"), language="ja")
    assert "サインイン" in signed_in_client(work).get("/login").text  # the organisation's default
