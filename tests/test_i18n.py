"""The report in each language of params.yaml `report.lang`: English, the text of the code
and templates, and Estonian, from mnist_basics/report/locale/et/LC_MESSAGES/messages.po.

The catalogue is complete (nothing untranslated or fuzzy) and current (extracting the
strings again finds nothing it lacks: a string added without `make messages` and a
translation fails here). The two pages, built from the same artifacts, show the same numbers
in the same order, and the Estonian one keeps no English sentence: not in its text, its alt
texts, or the figures' titles, labels and legends.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import typing
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from mnist_basics import PipelineError
from mnist_basics.params import PARAMS, SECTIONS, Report, load
from mnist_basics.pipeline import definition as pipeline
from mnist_basics.report import chapter as report
from mnist_basics.report import figures, i18n
from mnist_basics.report.chapter import build, inputs, load_run, parser, render
from mnist_basics.report.page import key_params
from tests.harness import ROOT
from tests.test_report import report_args, write_artifacts

NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)  # both pages: the same "written at"
ESTONIAN = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE]
# Words of an English sentence that no Estonian one has; code is not searched for them.
ENGLISH_WORDS = {"the", "and", "of", "with", "from", "for", "by", "each", "every", "when",
                 "this", "that", "is", "are", "not", "yet", "than", "after", "per", "its"}


# -- Pages from one set of artifacts ---------------------------------------------------------
def in_git_repo(root: Path) -> Path:
    """`root` as a repo with one committed file, edited since: the page's "uncommitted
    changes" then reads the same way in every language, whenever the test runs."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                       cwd=root, check=True, capture_output=True)

    git("init", "-q")
    (root / "notes.txt").write_text("before\n")
    git("add", "notes.txt")
    git("commit", "-qm", "notes")
    (root / "notes.txt").write_text("after\n")
    return root


def render_page(root: Path, lang: str, figure_texts: list[str] | None = None) -> str:
    """What stages/report.py renders in the project folder `root` (every path its default,
    as both engines run it) with `report.lang: lang`, written at NOW. The texts drawn into
    its figures go into `figure_texts`, when given."""
    params = yaml.safe_load((root / PARAMS).read_text())
    params["report"] = {"lang": lang}
    (root / PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        args = parser(None).parse_args(report_args(None))
        run = load_run(inputs(args), load(args.params, *SECTIONS))
        if figure_texts is not None:
            from matplotlib.text import Text

            chart = figures.chart

            def recording(fig, *a, **kw):
                figure_texts.extend(t.get_text() for t in fig.findobj(Text))
                return chart(fig, *a, **kw)

            mp.setattr(figures, "chart", recording)
        return render(build(run, now=NOW, cwd=root))


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, dict]:
    """Per language: the complete page, the texts of its figures, and the page with only the
    params (every section a note about what is missing)."""
    root = in_git_repo(write_artifacts(tmp_path_factory.mktemp("run")))
    empty = tmp_path_factory.mktemp("empty")
    (empty / PARAMS).write_text((ROOT / PARAMS).read_text())
    out = {}
    for lang in i18n.LANGUAGES:
        texts: list[str] = []
        out[lang] = {"html": render_page(root, lang, texts), "figures": texts,
                     "empty": render_page(empty, lang)}
    return out


class PageText(HTMLParser):
    """A page as a reader gets it: its visible text; the same without code, preformatted
    text and the params tables (names and values from params.yaml, in no language); the alt
    texts and labels; and the tags, ids and classes, for comparing the pages' structure."""

    SKIP = {"style", "script", "title"}

    def __init__(self, html: str):
        super().__init__()
        self.visible: list[str] = []
        self.prose: list[str] = []
        self.labels: list[str] = []
        self.structure: list[str] = []
        self.lang = None
        self._open: list[tuple[str, bool]] = []  # (tag, not prose) of each open element
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        self.labels += [v for k, v in a.items() if k in ("alt", "aria-label", "title") and v]
        if tag != "em":  # a translation may stress a word the English does not
            # Code and bold text may come in another order within a translated sentence.
            inline = "~" if tag in ("code", "strong") else ""
            self.structure.append(f"{inline}{tag}#{a.get('id', '')}.{a.get('class', '')}")
        if tag in ("meta", "img", "br", "input", "link"):  # void elements
            return
        not_prose = tag in ("code", "pre", *self.SKIP) or a.get("id") == "params"
        self._open.append((tag, not_prose or any(s for _, s in self._open)))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        if any(t in self.SKIP for t, _ in self._open):
            return
        self.visible.append(data)
        if not (self._open and self._open[-1][1]):
            self.prose.append(data)

    @staticmethod
    def join(parts: list[str]) -> str:
        return " ".join(" ".join(parts).split())


NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")  # 0.9511, 2,038, 4:15: a different format differs


def numbers(html: str) -> list[str]:
    return NUMBER.findall(PageText.join(PageText(html).visible))


# -- The catalogue ---------------------------------------------------------------------------
def read_catalogue(lang: str):
    from babel.messages.pofile import read_po

    with open(i18n.catalogue(lang), "rb") as f:
        return read_po(f, locale=lang, domain=i18n.DOMAIN)


def extracted():
    """The messages Babel finds in the code now, as `make messages` extracts them."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    with open(ROOT / "babel.cfg") as f:
        method_map, options_map = parse_mapping_cfg(f, "babel.cfg")
    catalog = Catalog()
    for path, lineno, message, comments, context in extract_from_dir(
            ROOT, method_map, options_map, comment_tags=("Translators:",)):
        catalog.add(message, None, [(path, lineno)], auto_comments=comments, context=context)
    return catalog


def messages(catalog) -> dict[tuple[str | None, str], object]:
    """(context, msgid) -> message; a plural message by its singular."""
    return {(m.context, m.id[0] if isinstance(m.id, tuple) else m.id): m
            for m in catalog if m.id}


def forms(value) -> list[str]:
    return list(value) if isinstance(value, tuple | list) else [value]


TAG = re.compile(r"<[^>]+>")
PLACEHOLDER = re.compile(r"%\([a-z_0-9]+\)s|%%")


@pytest.mark.parametrize("lang", ESTONIAN)
def test_every_message_has_a_translation(lang):
    catalog = read_catalogue(lang)
    assert len(messages(catalog)) > 100
    untranslated = [m.id for m in catalog if m.id and not all(s.strip() for s in forms(m.string))
                    or m.string == m.id and any(" " in f for f in fragments(forms(m.id)[0]))]
    assert untranslated == [], "translate these in " + str(i18n.catalogue(lang))
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == [], "check these translations, then remove their fuzzy flag"
    # The same placeholders, and the same markup but for emphasis: ids and code stay.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []
    for m in catalog:
        if not m.id:
            continue
        placeholders = {p for msgid in forms(m.id) for p in PLACEHOLDER.findall(msgid)}
        for msgid, msgstr in zip(forms(m.id) * 2, forms(m.string), strict=False):
            assert set(PLACEHOLDER.findall(msgstr)) == placeholders, m.id
            tags = [t for t in TAG.findall(msgstr) if t not in ("<em>", "</em>")]
            assert sorted(tags) == sorted(TAG.findall(msgid)), m.id


@pytest.mark.parametrize("lang", ESTONIAN)
def test_catalogue_holds_exactly_the_strings_of_the_code(lang):
    """A string added to report.py or a template (a partial included in it too) is missing
    here until `make messages` brings it in and someone translates it."""
    now = messages(extracted())
    catalogue = messages(read_catalogue(lang))
    assert len(now) > 100
    new = sorted(set(now) - set(catalogue), key=str)
    assert new == [], f"`make messages`, then translate the new strings in {lang}"
    gone = sorted(set(catalogue) - set(now), key=str)
    assert gone == [], "`make messages` removes the strings the code no longer has"
    for key, m in now.items():  # a plural is extracted as one
        assert isinstance(m.id, tuple) == isinstance(catalogue[key].id, tuple), key


def test_report_lang_param_lists_the_catalogues():
    assert typing.get_args(Report.model_fields["lang"].annotation) == i18n.LANGUAGES
    for lang in ESTONIAN:
        assert i18n.catalogue(lang).is_file()
    committed = yaml.safe_load((ROOT / PARAMS).read_text())
    assert committed["report"] == {"lang": "en"}
    assert "report" in pipeline.BY_NAME["report"].params
    assert {"mnist_basics/report/i18n.py", *(str(i18n.catalogue(lang).relative_to(ROOT))
                                      for lang in ESTONIAN)} <= set(pipeline.BY_NAME["report"].code)


def test_an_unknown_language_is_refused_in_one_line(tmp_path):
    params = yaml.safe_load((ROOT / PARAMS).read_text())
    params["report"]["lang"] = "de"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match=r"report\.lang: must be one of 'en' or 'et' "
                                            r"\(got 'de'\)"):
        load(tmp_path / "params.yaml", "report")


def test_figures_and_captions_follow_the_language():
    """report.py's strings in use: English by default, Estonian within `language("et")`."""
    import numpy as np

    y, x = np.array([1], np.uint8), np.zeros((1, 28, 28), np.uint8)
    pred = {"pred": np.array([0]), "probs": np.array([[0.8, 0.2]])}  # a 3 taken for a 7
    shown = report.mistakes(pred, y, x, "linear")["shown"]
    assert shown[0].caption == "a 3, called 7 (0.80)"
    with i18n.language("et"):
        et = report.mistakes(pred, y, x, "linear")["shown"]
        assert key_params("mlp", {"mlp": {"lr": 0.2, "batch_size": 256, "epochs": 1,
                                                 "hidden": 30}}) == (
            "õpimäär 0.2, partii 256, 1 epohh, 30 peidetud neuronit")
    assert et[0].caption == "3, arvati 7-ks (0.80)"
    assert et[0].alt.startswith("Valideerimisnumber 0: 3,")
    assert key_params("pixel_mean", {}) == (
        "no training: the mean of each class's training images")  # English again


# -- The pages -------------------------------------------------------------------------------
def test_both_languages_render_the_same_page(pages):
    structure = {}
    for lang, page in pages.items():
        html = PageText(page["html"])
        assert html.lang == lang
        assert PageText(page["empty"]).lang == lang
        structure[lang] = html.structure
    for lang in structure:  # every element, id and class: only words differ
        structure[lang] = ([e for e in structure[lang] if not e.startswith("~")],
                           sorted(e for e in structure[lang] if e.startswith("~")))
    assert structure["et"] == structure["en"]
    sections = re.findall(r'<section id="([^"]+)"', pages["et"]["html"])
    assert sections == list(report.SECTIONS)
    assert "Puudu:" not in pages["et"]["html"] and "Missing" not in pages["en"]["html"]
    for section in ("data", "pixel-similarity", "sgd", "loss-function", "linear", "mlp",
                    "resnet18", "mistakes"):  # before any stage ran: a note in each
        body = pages["et"]["empty"].split(f'<section id="{section}">')[1].split("</section>")[0]
        assert "<strong>Puudu:</strong>" in body and "käivita etapp" in body, section


def test_the_numbers_are_the_same_in_both_languages(pages):
    en, et = numbers(pages["en"]["html"]), numbers(pages["et"]["html"])
    assert len(en) > 500
    assert et == en
    assert numbers(pages["et"]["empty"]) == numbers(pages["en"]["empty"])


def fragments(msgid: str) -> list[str]:
    """The English words of a msgid as they show on a page: the pieces between its
    placeholders and code, without markup."""
    text = re.sub(r"<code>.*?</code>", "\0", msgid)
    text = unescape(TAG.sub("", PLACEHOLDER.sub("\0", text)))
    pieces = (" ".join(p.split()).strip(" .,;:()–-") for p in text.split("\0"))
    return [p for p in pieces if re.search(r"[A-Za-z]{2}", p)]


def english_words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)} & ENGLISH_WORDS


@pytest.mark.parametrize("page", ["html", "empty"])
def test_no_english_is_left_on_the_estonian_page(pages, page):
    """Neither a sentence that was never made a message (its English words give it away)
    nor a message shown untranslated (its msgid's words are on the page)."""
    figures = pages["et"]["figures"] if page == "html" else []
    assert figures or page == "empty"
    assert_no_english(pages["et"][page], figures)


def assert_no_english(html: str, figures: list[str]) -> None:
    """An Estonian page (and its figures' texts) holds no English sentence and no message
    left untranslated; the other pages' tests use it too."""
    et = PageText(html)
    places = {"text": et.prose, "alt": et.labels, "figure": figures}
    english = [(where, " ".join(t.split())) for where, texts in places.items() for t in texts
               if english_words(t)]
    assert english == []
    joined = {where: " | ".join(texts) for where, texts in places.items()}
    joined["text"] = PageText.join(et.prose)
    left = []
    for m in read_catalogue("et"):
        if not m.id:
            continue
        translated = PLACEHOLDER.sub(" ", " ".join(forms(m.string)))
        for piece in {f for msgid in forms(m.id) for f in fragments(msgid)}:
            if piece in translated:  # a name the Estonian keeps: RMSE, simple_net, ...
                continue
            pattern = rf"(?<![\w-]){re.escape(piece)}(?![\w-])"
            left += [(where, piece) for where, text in joined.items() if re.search(pattern, text)]
    assert left == []


def test_the_english_page_is_the_source_text(pages):
    """English needs no catalogue: what the code says is what the page shows."""
    en = PageText(pages["en"]["html"])
    assert "Validation accuracy" in PageText.join(en.prose)
    assert "one-cycle learning rate" in pages["en"]["figures"]
    assert "ühe tsükli õpimäär" in pages["et"]["figures"]
