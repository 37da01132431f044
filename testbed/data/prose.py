"""English prose paragraphs out of documentation formats: HTML pages, info manuals (and man pages through
real_text.roff_paragraphs), with the filter that keeps prose and drops code, navigation and UI strings.

Only the running text of a page survives: `<pre>`, tables, scripts, navigation bars, sidebars, headers,
footers, API signatures (`<dt>`) and headings are dropped; a paragraph mostly made of link text is a menu.
`is_prose` then keeps paragraphs of at least MIN_WORDS words that end as a sentence does and are mostly
letters (options, code and tables of symbols fail), and `prose_key` is the normalised form paragraphs are
deduplicated by (case, punctuation and whitespace ignored).
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser

MIN_WORDS = 8  # shorter paragraphs are headings, menu entries, captions and UI strings
MAX_SYMBOLS = 0.04  # code characters ({}[]<>=;$#@|\`_) per character, above which a paragraph is code
MIN_LETTERS = 0.75  # letters per non-space character, below which a paragraph is numbers, options or code
MAX_LINK_SHARE = 0.5  # a paragraph whose text is mostly inside <a> is navigation (a table of contents)
MIN_ASCII_LETTERS = 0.9  # ASCII letters per letter, below which a paragraph is not English

# Elements whose whole content is dropped (with everything inside them).
SKIP_TAGS = frozenset({"head", "script", "style", "pre", "table", "nav", "header", "footer", "dt", "form", "button",
                       "select", "textarea", "svg", "math", "h1", "h2", "h3", "h4", "h5", "h6", "caption", "figure",
                       "noscript", "iframe", "object", "kbd", "samp"})  # fmt: skip
# Elements with one of these as a class, id or role are page furniture (Sphinx, DocBook, texinfo, mdBook).
SKIP_CLASSES = re.compile(
    r"sphinxsidebar\w*|related|navheader|navfooter|navigation|nav|navbar|sidebar|breadcrumbs?|toc|"
    r"toctree-wrapper|footer|header|menu|highlight(?:-\w+)?|programlisting|screen|synopsis|funcsynopsis|"
    r"cmdsynopsis|literallayout|legalnotice|footnotes?|searchbox|headerlink|wy-nav-side|rst-versions|"
    r"wy-breadcrumbs|mobile-nav|nav-wrapper|nav-chapters|edit-link|version_switcher_placeholder|search|"
    r"contents|topic|example-contents|doc-toc",
    re.IGNORECASE,
)
VOID_TAGS = frozenset({"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr",
                       "param", "track"})  # fmt: skip
# Elements that end a paragraph where they start and end (everything else is inline).
BLOCK_TAGS = frozenset({"p", "div", "li", "ul", "ol", "dl", "dd", "blockquote", "section", "article", "main",
                        "body", "html", "td", "tr", "th", "aside", "details", "summary", "center", "address",
                        "br", "hr", "figcaption", "title"})  # fmt: skip

_SENTENCE_END = re.compile(r"[.!?:](?:[\"'\u2019\u201d)\]]*)$")
_SYMBOLS = frozenset("{}[]<>=;$#@|\\`_")
_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


class _PageText(HTMLParser):
    """The paragraphs of one HTML page, furniture dropped; each paragraph with its share of link text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.skip: list[str] = []  # the open element being skipped, repeated once per nested same-name element
        self.parts: list[str] = []
        self.link_chars = 0
        self.in_link = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag == self.skip[0] and tag not in VOID_TAGS:
                self.skip.append(tag)
            return
        names = [name for key, value in attrs if key in ("class", "id", "role") for name in (value or "").split()]
        if tag in SKIP_TAGS or (tag not in VOID_TAGS and any(SKIP_CLASSES.fullmatch(name) for name in names)):
            self.flush()
            if tag not in VOID_TAGS:
                self.skip.append(tag)
            return
        if tag in BLOCK_TAGS:
            self.flush()
        elif tag == "a":
            self.in_link += 1

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag == self.skip[0]:
                self.skip.pop()
            return
        if tag in BLOCK_TAGS:
            self.flush()
        elif tag == "a" and self.in_link:
            self.in_link -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)
            if self.in_link:
                self.link_chars += len(data.strip())

    def flush(self) -> None:
        text = _SPACES.sub(" ", "".join(self.parts)).strip()
        if text and self.link_chars <= MAX_LINK_SHARE * len(text):
            self.paragraphs.append(text)
        self.parts, self.link_chars = [], 0


def html_paragraphs(page: str) -> list[str]:
    """The text paragraphs of an HTML page (not yet filtered by `is_prose`)."""
    parser = _PageText()
    parser.feed(page)
    parser.close()
    parser.flush()
    return parser.paragraphs


def info_paragraphs(manual: str) -> list[str]:
    """The text paragraphs of an info manual: its nodes' blank-line separated blocks, without node headers,
    menus, indented examples and tag tables."""
    paragraphs = []
    for node in manual.split("\x1f"):
        lines = node.strip("\n").splitlines()
        if not lines or lines[0].startswith(("Tag Table:", "Indirect:", "End Tag Table")):
            continue
        body = lines[1:] if lines[0].startswith("File:") else lines
        for block in "\n".join(body).split("\n\n"):
            rows = [row for row in block.splitlines() if row.strip()]
            if not rows or rows[0].startswith(("* Menu:", "* ")) or all(row.startswith("     ") for row in rows):
                continue
            if set(rows[-1].strip()) <= set("=-*.~"):  # an underlined heading
                continue
            paragraphs.append(_SPACES.sub(" ", " ".join(rows)).strip())
    return paragraphs


def is_prose(text: str) -> bool:
    """Whether a paragraph is running English prose: long enough, ending as a sentence, mostly letters."""
    if len(text.split()) < MIN_WORDS or not _SENTENCE_END.search(text) or "\ufffd" in text:
        return False
    visible = len(text) - text.count(" ")
    letters = sum(c.isalpha() for c in text)
    ascii_letters = sum(c.isascii() and c.isalpha() for c in text)
    symbols = sum(c in _SYMBOLS for c in text)
    return (
        letters >= MIN_LETTERS * visible
        and ascii_letters >= MIN_ASCII_LETTERS * letters
        and symbols <= MAX_SYMBOLS * len(text)
    )


def prose_key(text: str) -> str:
    """The key paragraphs are deduplicated by: a hash of the case-folded words, punctuation ignored."""
    return hashlib.blake2b(_NOT_WORD.sub(" ", text.casefold()).strip().encode(), digest_size=12).hexdigest()
