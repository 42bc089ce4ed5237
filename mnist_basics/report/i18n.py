"""The report's languages: one gettext catalogue per language, read from its .po file.

The English text is written in the code and the templates (it is the msgid); every other
language has `locale/<lang>/LC_MESSAGES/messages.po`, kept by Babel (`make messages` extracts
the strings of report.py and of every template, babel.cfg says how). The .po is compiled in
memory when a page is rendered, so no binary .mo file is kept beside it.

One catalogue serves the whole page: the Jinja templates get it through `jinja2.ext.i18n`
(`{% trans %}` blocks and `_()`, see `install`), and report.py's figure titles, axis labels,
legends, captions and alt texts through `gettext` / `ngettext` below, which follow the
language set by `language(...)`:

    with language("et"):
        title = gettext("one-cycle learning rate")   # "ühe tsükli õpimäär"

Numbers are formatted by the code, the same way in every language: the translations carry
them as %(name)s placeholders.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "et")  # params.yaml report.lang; the first is the source language
SOURCE = LANGUAGES[0]
LOCALE = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"

_ENGLISH = _gettext.NullTranslations()
_active: ContextVar[_gettext.NullTranslations | None] = ContextVar("translations", default=None)


def catalogue(lang: str) -> Path:
    """The .po file of a language other than the source."""
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The language's catalogue as gettext translations; English is the text itself.

    Fuzzy entries (an old translation Babel matched to a changed string) are left out, so
    that such a string shows in English rather than wrongly: tests/test_i18n.py fails on them.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"no catalogue for language {lang!r}; known: {', '.join(LANGUAGES)}")
    if lang == SOURCE:
        return _ENGLISH
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(catalogue(lang), "rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return _gettext.GNUTranslations(mo)


@contextmanager
def language(lang: str) -> Iterator[_gettext.NullTranslations]:
    """Within the block, `gettext` and `ngettext` translate into `lang`."""
    token = _active.set(translations(lang))
    try:
        yield _current()
    finally:
        _active.reset(token)


def _current() -> _gettext.NullTranslations:
    return _active.get() or _ENGLISH


def gettext(message: str) -> str:
    return _current().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _current().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a string for extraction only; translate it with gettext where it is shown."""
    return message


def install(env, lang: str) -> None:
    """Give a Jinja environment (with `jinja2.ext.i18n`) the language's catalogue.

    Newstyle gettext: `_("... %(n)s ...", n=x)` formats and escapes by itself, and every
    `{% trans %}` block is trimmed (whitespace collapsed, as babel.cfg extracts them). An
    included template (`{% include "part.html.j2" %}`) shares the environment, so its
    `{% trans %}` blocks are translated the same way.
    """
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(lang), newstyle=True)
