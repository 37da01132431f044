"""A real multilingual corpus built offline from what a Debian-like system ships.

Parallel pairs come from gettext catalogs (`.mo` files: an English msgid and its translation),
monolingual text from the same catalogs plus translated man pages (roff source, converted to plain
paragraphs here). Everything is cleaned (placeholders, markup, short segments, duplicates) and split
deterministically into train/valid/test by a hash of the English key, so one English sentence lands
in the same split in every language and in both the monolingual and the parallel files, and test
pairs never leak into training text (sentences linked by a shared translation share a split).
The register is software interfaces and manuals.

Layout written under `out_dir` (registered as `local` sources in configs/data/real.yaml):
    mono/<lang>/<split>.jsonl    {"text": ..., "origin": "mo:<domain>" | "man:<page>"}
    pairs/en-<lang>/<split>.jsonl  {"translation": {"en": ..., "<lang>": ...}, "origin": "<domain>"}
    manifest.json                inputs fingerprint, counts
The build is idempotent (a manifest with the same inputs fingerprint is left alone) and atomic (built
under a temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from testbed.data.real_text import clean, read_man_page, read_mo, roff_paragraphs
from testbed.errors import TestbedError
from testbed.io import atomic_dir
from testbed.paths import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "data" / "real"  # where configs/data/real.yaml expects it
DEFAULT_EXTRA_ROOT = REPO_ROOT / ".cache" / "real-root"  # `make real-data` unpacks EXTRA_PACKAGES here
LANGUAGES = ("en", "de", "fr", "ro")
SPLITS = ("train", "valid", "test")
HELD_OUT = 0.05  # share of keys in valid, and again in test
VERSION = 2  # bump when the cleaning changes: part of the fingerprint
OTHER_CORPORA = ("docs",)  # built beside this one under out_dir by other builders (docs.py): kept on a rebuild
CATALOG_GLOBS = (  # relative to a root; {lang} is the language code
    "usr/share/locale/{lang}/LC_MESSAGES/*.mo",
    "usr/share/locale-langpack/{lang}/LC_MESSAGES/*.mo",
    "usr/lib/libreoffice/program/resource/{lang}/LC_MESSAGES/*.mo",
)
MAN_GLOBS = {"en": "usr/share/man/man[1-8]/*", "translated": "usr/share/man/{lang}/man[1-8]/*"}
# Debian packages that add catalogs and man pages in de/fr/ro (make real-data downloads them, no root).
EXTRA_PACKAGES = (
    "manpages-de",
    "manpages-fr",
    "manpages-ro",
    "libreoffice-l10n-de",
    "libreoffice-l10n-fr",
    "libreoffice-l10n-ro",
)


# --- gettext catalogs -----------------------------------------------------------------------------


def split_of(key: str) -> str:
    """train / valid / test, fixed by the key's hash: the same on every machine and every build."""
    value = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if value < HELD_OUT else "valid" if value < 2 * HELD_OUT else "train"


# --- inputs ---------------------------------------------------------------------------------------


def _glob(roots: list[Path], pattern: str) -> list[Path]:
    return sorted({p for root in roots for p in root.glob(pattern) if p.is_file()})


def catalogs(roots: list[Path], lang: str) -> list[Path]:
    return [p for glob in CATALOG_GLOBS for p in _glob(roots, glob.format(lang=lang))]


def man_pages(roots: list[Path], lang: str) -> list[Path]:
    pattern = MAN_GLOBS["en"] if lang == "en" else MAN_GLOBS["translated"].format(lang=lang)
    return _glob(roots, pattern)


def _page_name(path: Path) -> str:
    return path.name.removesuffix(".gz")


def _domain(path: Path) -> str:
    return path.stem if "libreoffice" not in path.parts else f"libreoffice-{path.stem}"


def input_files(roots: list[Path], languages: tuple[str, ...]) -> list[Path]:
    translated = [lang for lang in languages if lang != "en"]
    files = [p for lang in translated for p in catalogs(roots, lang) + man_pages(roots, lang)]
    wanted = {_page_name(p) for lang in translated for p in man_pages(roots, lang)}
    if "en" in languages:  # English pages: the ones that have a translation (a comparable corpus)
        files += [p for p in man_pages(roots, "en") if _page_name(p) in wanted]
    return files


def fingerprint(roots: list[Path], languages: tuple[str, ...]) -> str:
    """A hash of the builder version and every input file's path, size and modification time."""
    digest = hashlib.sha256(json.dumps([VERSION, list(languages)]).encode())
    for path in input_files(roots, languages):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --- the build ------------------------------------------------------------------------------------


def _segments(roots: list[Path], lang: str) -> Iterator[tuple[str, str, str]]:
    """(English text, translation, catalog domain) for every usable catalog entry of `lang`."""
    for path in catalogs(roots, lang):
        domain = _domain(path)
        for msgid, msgstr in read_mo(path).items():
            source, target = clean(msgid), clean(msgstr)
            if source and target and source != target:
                yield source, target, domain


def _man_documents(roots: list[Path], lang: str, pages: set[str] | None, seen: set[str]) -> Iterator[tuple[str, str]]:
    """(page name, text) per man page; paragraphs already in `seen` (casefolded) are dropped."""
    seen_real: set[Path] = set()
    for path in man_pages(roots, lang):
        real = path.resolve()
        if real in seen_real or (pages is not None and _page_name(path) not in pages):
            continue
        seen_real.add(real)
        source = read_man_page(path)
        if source is None:
            continue
        paragraphs = []
        for paragraph in roff_paragraphs(source):
            text = clean(paragraph, max_chars=None)
            if text and text.casefold() not in seen:  # boilerplate (translator credits), catalog strings
                seen.add(text.casefold())
                paragraphs.append(text)
        if paragraphs:
            yield _page_name(path), "\n".join(paragraphs)


def _segment_splits(segments: dict[str, list[tuple[str, str, str]]]) -> dict[str, str]:
    """The split of every English sentence, shared by everything it is linked to.

    Two English sentences with the same translation ("Cancel" and "Abort" are both "Abbrechen") are
    linked, and so on transitively (union-find); a linked group takes the split of its smallest English
    key, so no text of a test pair, in any language, also appears in a training file.
    """
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for lang, rows in segments.items():
        for source, target, _ in rows:
            a, b = find(("en", source.casefold())), find((lang, target.casefold()))
            if a != b:
                parent[max(a, b)] = min(a, b)
    smallest: dict[tuple[str, str], str] = {}
    for node in list(parent):
        if node[0] == "en":
            root = find(node)
            smallest[root] = min(smallest.get(root, node[1]), node[1])
    return {node[1]: split_of(smallest[find(node)]) for node in parent if node[0] == "en"}


def build(
    out_dir: Path,
    roots: list[Path] | None = None,
    languages: tuple[str, ...] = LANGUAGES,
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Build (or find up to date) the corpus in `out_dir`; returns its manifest."""
    roots = _checked_roots(roots, languages)
    out_dir = Path(out_dir)
    stamp = fingerprint(roots, languages)
    current = None if force else up_to_date(out_dir, stamp)
    if current is not None:
        return current
    corpus = _Corpus(languages)
    corpus.add_catalogs(roots)
    corpus.add_man_pages(roots)
    manifest = {
        "fingerprint": stamp,
        "version": VERSION,
        "seed": seed,
        "languages": list(languages),
        "roots": [str(r) for r in roots],
        "inputs": corpus.inputs,
    }
    return _write(out_dir, corpus, manifest, random.Random(seed))


def up_to_date(out_dir: Path, stamp: str) -> dict | None:
    """The manifest of the corpus in `out_dir` when it was built from inputs with this fingerprint."""
    path = Path(out_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    return manifest if manifest.get("fingerprint") == stamp else None


def _checked_roots(roots: list[Path] | None, languages: tuple[str, ...]) -> list[Path]:
    roots = [Path("/")] if roots is None else [Path(r) for r in roots]
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or "en" not in languages:
        raise TestbedError(
            f"languages={','.join(languages)}: {unknown[0] if unknown else 'en'!r}: "
            f"the builder knows {', '.join(LANGUAGES)} and always needs en (the pivot)"
        )
    for root in roots:
        if not root.is_dir():
            raise TestbedError(f"{root}: no such directory (a root to read catalogs and man pages from)")
    return roots


class _Corpus:
    """Monolingual documents and parallel pairs per language and split, deduplicated as they are added."""

    def __init__(self, languages: tuple[str, ...]):
        self.translated = [lang for lang in languages if lang != "en"]
        self.mono: dict[str, dict[str, list[dict]]] = {lang: {s: [] for s in SPLITS} for lang in languages}
        self.pairs: dict[str, dict[str, list[dict]]] = {lang: {s: [] for s in SPLITS} for lang in self.translated}
        self.seen: dict[str, set[str]] = {lang: set() for lang in languages}  # casefolded monolingual texts
        self.inputs: dict[str, dict[str, int]] = {}

    def add_mono(self, lang: str, split: str, text: str, origin: str) -> None:
        folded = text.casefold()
        if origin.startswith("man:") or folded not in self.seen[lang]:  # pages: deduplicated by paragraph
            self.seen[lang].add(folded)
            self.mono[lang][split].append({"text": text, "origin": origin})

    def add_catalogs(self, roots: list[Path]) -> None:
        """Every catalog entry: both sides as monolingual text, and the first translation of each English
        sentence as a pair, all in the split its English sentence's links decide."""
        segments = {lang: list(_segments(roots, lang)) for lang in self.translated}
        for lang in self.translated:
            self.inputs[lang] = {"catalogs": len(catalogs(roots, lang)), "man_pages": 0}
            if not self.inputs[lang]["catalogs"]:
                raise TestbedError(
                    f"language {lang!r}: no gettext catalogs under {', '.join(map(str, roots))} "
                    f"({CATALOG_GLOBS[0].format(lang=lang)})"
                )
        split_by_english = _segment_splits(segments)
        for lang, rows in segments.items():
            seen_source: set[str] = set()
            for source, target, domain in rows:
                key = source.casefold()
                split = split_by_english[key]
                self.add_mono("en", split, source, f"mo:{domain}")
                self.add_mono(lang, split, target, f"mo:{domain}")
                if key not in seen_source:  # one translation per English sentence: the first catalog's
                    seen_source.add(key)
                    self.pairs[lang][split].append({"translation": {"en": source, lang: target}, "origin": domain})
        self.inputs["en"] = {
            "catalogs": len({_domain(p) for lang in self.translated for p in catalogs(roots, lang)}),
            "man_pages": 0,
        }  # English: the msgids of those catalogs

    def add_man_pages(self, roots: list[Path]) -> None:
        """Translated man pages, then the English pages of the same names, split by page."""
        translated_pages: set[str] = set()
        for lang in self.translated:
            for page, text in _man_documents(roots, lang, None, self.seen[lang]):
                translated_pages.add(page)
                self.inputs[lang]["man_pages"] += 1
                self.add_mono(lang, split_of(f"man:{page}"), text, f"man:{page}")
        for page, text in _man_documents(roots, "en", translated_pages, self.seen["en"]):
            self.inputs["en"]["man_pages"] += 1
            self.add_mono("en", split_of(f"man:{page}"), text, f"man:{page}")


def _write(out_dir: Path, corpus: _Corpus, manifest: dict, rng: random.Random) -> dict:
    """Shuffle and write every file in a staging directory that then replaces `out_dir` (testbed.io)."""
    counts: dict[str, dict] = {"mono": {}, "pairs": {}}
    manifest = dict(manifest, counts=counts)

    def write(staging: Path) -> None:
        for kind, table in (("mono", corpus.mono), ("pairs", corpus.pairs)):
            for lang, splits in table.items():
                name = lang if kind == "mono" else f"en-{lang}"
                counts[kind][name] = {}
                for split, records in splits.items():
                    rng.shuffle(records)
                    _write_jsonl(staging / kind / name / f"{split}.jsonl", records)
                    counts[kind][name][split] = len(records)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        for name in OTHER_CORPORA:  # hard links: the originals stay whole if the swap fails
            if (out_dir / name).is_dir():
                shutil.copytree(out_dir / name, staging / name, copy_function=os.link)

    atomic_dir(out_dir, write)
    return manifest


def default_roots(extra: Iterable[str | Path] = ()) -> list[Path]:
    """/ plus the given roots plus DEFAULT_EXTRA_ROOT when `make real-data` has unpacked packages there."""
    roots = [Path("/"), *map(Path, extra)]
    if DEFAULT_EXTRA_ROOT.is_dir() and DEFAULT_EXTRA_ROOT not in roots:
        roots.append(DEFAULT_EXTRA_ROOT)
    return roots


def ensure_corpus() -> dict:
    """The corpus configs/data/real.yaml points to, built if missing or stale (instant when up to date).

    A file lock keeps concurrent callers (pytest workers) from building it twice at once.
    """
    from filelock import FileLock

    DEFAULT_EXTRA_ROOT.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(DEFAULT_EXTRA_ROOT.parent / "real-corpus.lock")):
        return build(DEFAULT_OUT, default_roots())


def fetch_packages(dest: Path = DEFAULT_EXTRA_ROOT, packages: tuple[str, ...] = EXTRA_PACKAGES) -> str:
    """Unpack Debian packages with more catalogs and man pages into `dest`, without root or installing.

    `apt-get download` fetches the .deb files (this needs the package lists and a network); `dpkg -x`
    unpacks them into a staging directory that is renamed into place. Returns what happened; failing
    to fetch is not an error: the corpus is then built from the system's own files.
    """
    import subprocess

    marker = dest / ".packages"
    if marker.is_file() and marker.read_text().split() == sorted(packages):
        return f"{dest}: already unpacked"

    def unpack(root: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}-debs-", dir=dest.parent) as debs:
            fetched = subprocess.run(["apt-get", "download", *packages], cwd=debs, capture_output=True, text=True)
            if fetched.returncode != 0:
                reason = (fetched.stderr.strip().splitlines() or ["?"])[-1]
                raise OSError(f"apt-get download failed ({reason})")
            for deb in sorted(Path(debs).glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
        (root / ".packages").write_text("\n".join(sorted(packages)) + "\n")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_dir(dest, unpack)
    except (OSError, subprocess.CalledProcessError) as err:
        return f"fetching packages failed ({err}); building from the system's files only"
    return f"{dest}: unpacked {', '.join(packages)}"


def summary(manifest: dict, out_dir: Path, seconds: float) -> str:
    lines = [f"real corpus in {out_dir} ({seconds:.1f} s; roots {', '.join(manifest['roots'])})"]
    for lang, found in manifest["inputs"].items():
        lines.append(f"  inputs {lang}: {found['catalogs']} catalogs, {found['man_pages']} man pages")
    for kind, table in manifest["counts"].items():
        for name, splits in table.items():
            counts = ", ".join(f"{split} {n:,}" for split, n in splits.items())
            lines.append(f"  {kind:5s} {name:6s} {counts}  ({'pairs' if kind == 'pairs' else 'documents'})")
    return "\n".join(lines)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
