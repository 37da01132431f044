"""Reading the texts a Debian-like system ships, for the real corpus (testbed/data/real.py): binary gettext
catalogs (`.mo`), man pages (roff source to plain paragraphs), and the cleaning every segment goes through
(placeholders, markup, accelerator mnemonics, whitespace; segments too short or not mostly letters dropped).
"""

from __future__ import annotations

import gzip
import html
import re
import struct
from pathlib import Path

MIN_WORDS = 3
MAX_SEGMENT_CHARS = 600


def read_mo(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a binary gettext catalog (singular entries only, context stripped).

    Parsed here rather than with `gettext.GNUTranslations`, which rejects a whole catalog when one
    string does not decode in the declared charset; here only that entry is dropped.
    """
    data = path.read_bytes()
    if len(data) < 28:
        return {}
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if order is None:
        return {}
    _, count, ids_at, strs_at = struct.unpack(order + "4I", data[4:20])

    def entry(table: int, i: int) -> bytes:
        length, offset = struct.unpack(order + "2I", data[table + 8 * i : table + 8 * i + 8])
        return data[offset : offset + length]

    raw = [(entry(ids_at, i), entry(strs_at, i)) for i in range(count)]
    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"":
            found = re.search(rb"charset=([\w.-]+)", msgstr)
            charset = found.group(1).decode("ascii") if found else charset
    out = {}
    for msgid, msgstr in raw:
        if not msgid or b"\x00" in msgid:  # header, or a plural entry (msgid\0msgid_plural)
            continue
        try:
            source, target = msgid.decode("utf-8"), msgstr.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        out[source.rpartition("\x04")[2]] = target  # msgctxt\x04msgid
    return out


# --- man pages ------------------------------------------------------------------------------------

_GLYPHS = {
    "aq": "'",
    "dq": '"',
    "lq": "\u201c",
    "rq": "\u201d",
    "oq": "\u2018",
    "cq": "\u2019",
    "em": "\u2014",
    "en": "\u2013",
    "hy": "-",
    "bu": "\u2022",
    "co": "\u00a9",
    "rg": "\u00ae",
    "tm": "\u2122",
    "mu": "\u00d7",
    "Fo": "\u00ab",
    "Fc": "\u00bb",
    "fo": "\u2039",
    "fc": "\u203a",
    "ss": "\u00df",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "sl": "/",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "ba": "|",
    "or": "|",
    "pl": "+",
    "eq": "=",
    "la": "\u27e8",
    "ra": "\u27e9",
    "ua": "\u2191",
    "da": "\u2193",
    "->": "\u2192",
    "<-": "\u2190",
    "de": "\u00b0",
    "Eu": "\u20ac",
    "eu": "\u20ac",
    ":a": "\u00e4",
    ":o": "\u00f6",
    ":u": "\u00fc",
    ":A": "\u00c4",
    ":O": "\u00d6",
    ":U": "\u00dc",
    "'e": "\u00e9",
    "`e": "\u00e8",
    "^e": "\u00ea",
    "`a": "\u00e0",
    "^a": "\u00e2",
    ",c": "\u00e7",
    "^i": "\u00ee",
    "^o": "\u00f4",
    "`u": "\u00f9",
}
_ESCAPE = re.compile(
    r"""\\(?:
      f(?:\[[^\]]*\]|\(..|.)            # font change
    | [sS][-+]?(?:\d|\(\d\d|\[[^\]]*\])  # point size
    | n(?:\[[^\]]*\]|\(..|.)            # number register
    | \*(?:\[([^\]]*)\]|\((..)|(.))       # string register -> groups 1-3 (quotes of man-pages' an.tmac)
    | \((..)                             # two-character glyph -> group 4
    | \[([^\]]*)\]                       # named glyph -> group 5
    | (.)                                # one-character escape -> group 6
)""",
    re.VERBOSE,
)
_SIMPLE = {"-": "-", "e": "\\", " ": " ", "~": " ", "0": " ", "'": "'", "`": "`", ".": ".", "\\": "\\"}
_PARAGRAPH_MACROS = {
    "SH",
    "SS",
    "PP",
    "LP",
    "P",
    "TP",
    "TQ",
    "IP",
    "HP",
    "RS",
    "RE",
    "sp",
    "Sh",
    "Ss",
    "Pp",
    "Lp",
    "It",
    "Bl",
    "El",
    "Bd",
    "Ed",
    "EX",
    "EE",
    "nf",
    "fi",
    "TS",
    "TE",
    "in",
}
_TEXT_MACROS = {
    "B",
    "I",
    "SM",
    "SB",
    "BR",
    "IR",
    "RB",
    "BI",
    "IB",
    "RI",
    "OP",
    "UR",
    "MT",
    "Nm",
    "Nd",
    "Fl",
    "Ar",
    "Op",
    "Pa",
    "Xr",
    "Em",
    "Sy",
    "Dq",
    "Qq",
    "Sq",
    "Li",
    "Cm",
    "Ev",
    "Va",
}
_ALTERNATING = {"BR", "IR", "RB", "BI", "IB", "RI"}  # alternate fonts: arguments join without spaces
_SKIP_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "de": "..", "ig": "..", "Bd": "Ed"}


def _unescape(text: str) -> str:
    def sub(match: re.Match) -> str:
        *strings, glyph, named, simple = match.groups()
        string = next((s for s in strings if s is not None), None)
        if string is not None:
            return _GLYPHS.get(string, _GLYPHS.get(string.lower(), ""))
        if glyph is not None:
            return _GLYPHS.get(glyph, "")
        if named is not None:
            if named.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,5}", named):
                return chr(int(named[1:], 16))
            return _GLYPHS.get(named, "")
        if simple is not None:
            return _SIMPLE.get(simple, "")
        return ""

    return _ESCAPE.sub(sub, text.split('\\"', 1)[0])


def _macro_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def roff_paragraphs(source: str) -> list[str]:
    """Plain-text paragraphs of a man page's roff source (man and common mdoc macros).

    No-fill blocks (examples, tables, synopses in .nf) are dropped: they are code, not prose.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    skip_until = None

    def close() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for line in source.splitlines():
        if skip_until is not None:
            if line.startswith(("." + skip_until, "'" + skip_until)) or (skip_until == ".." and line.strip() == ".."):
                skip_until = None
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name in _SKIP_BLOCKS:
                close()
                skip_until = _SKIP_BLOCKS[name]
            elif name in _PARAGRAPH_MACROS:
                close()
            elif name in _TEXT_MACROS:
                joiner = "" if name in _ALTERNATING else " "
                text = _unescape(joiner.join(_macro_args(rest)))
                if text.strip():
                    current.append(text.strip())
            continue  # any other request: layout, definitions, conditionals
        text = _unescape(line).strip()
        if text:
            current.append(text)
        else:
            close()
    close()
    return paragraphs


def read_man_page(path: Path) -> str | None:
    """The roff source of a (possibly gzipped) man page; None for redirects and undecodable files."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith(".so "):
        return None
    return text


# --- cleaning -------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"%(?:\d+\$)?[-+#0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64)?[diouxXeEfFgGaAcspn%]"
    r"|%\(\w+\)[sdif]|%[A-Za-z_]\w*%|\{[\w.:!\[\]]*\}|\$\{?\w+\}?|\$\(\w+\)|<\w+>|\[\w+\]"
)
_TAG = re.compile(
    r"</?(?:b|i|u|s|a|p|br|em|strong|span|big|small|tt|sub|sup|ul|ol|li|code|kbd|qt|html|body|div|"
    r"font|h[1-6]|link|ahelp|emph|item|literal|menuitem|keycap|command|filename)(?:\s[^<>]*)?/?>"
)
_MNEMONIC = re.compile(r"(?<![\w~_&])[_~&](?=\w)")


def clean(text: str, max_chars: int | None = MAX_SEGMENT_CHARS) -> str | None:
    """A segment with markup removed and whitespace collapsed, or None when it should be dropped.

    Dropped: placeholders (printf %s, {0}, ${var}, <file>), very short segments (< MIN_WORDS words),
    over-long ones (lists, help screens), and text that is mostly not letters (options, code).
    """
    text = _TAG.sub("", text)  # markup tags go; anything else in <...> is a placeholder
    if _PLACEHOLDER.search(text):
        return None
    text = html.unescape(text)
    text = _MNEMONIC.sub("", text)
    text = " ".join(text.split())
    if len(text.split()) < MIN_WORDS or (max_chars is not None and len(text) > max_chars):
        return None
    letters = sum(c.isalpha() for c in text)
    if letters < 0.6 * len(text.replace(" ", "")) or "\\" in text or "\ufffd" in text:
        return None
    return text
