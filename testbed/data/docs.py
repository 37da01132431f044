"""An English prose corpus built offline from Debian's documentation packages (`docs_en`).

Debian documentation packages (the Python, PostgreSQL, Perl, Git, SQLite, Linux kernel and Django manuals,
the Debian handbook, reference and policy, ...) are fetched with `apt-get download` and unpacked with
`dpkg -x` into one directory per package (no root, nothing installed), the manual pages and the core tools'
man and info pages among them; the pages installed on the machine are read only when asked (`system`), since
they make the corpus differ from machine to machine. Every HTML page, man page and info manual becomes
paragraphs (testbed/data/prose.py); only English prose paragraphs are kept, each paragraph once in the whole
corpus (by a normalised hash, in a fixed order: packages by name, files by path), and a page's paragraphs are
cut into documents of at most DOC_CHARS characters. A page's documents go to train, valid or test together,
by a hash of the page's name (real.split_of: the same on every machine and build), and each split is
shuffled with a fixed seed.

Layout written under `out_dir` (registered as the local source `docs_en` in configs/data/real.yaml):
    train.jsonl valid.jsonl test.jsonl    {"text": ..., "origin": <package>}
    manifest.json                         inputs fingerprint, packages and versions, counts per package
The build is idempotent (a manifest with the same fingerprint is left alone, in well under a second) and
atomic (built under a temporary name, then renamed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.data.prose import html_paragraphs, info_paragraphs, is_prose, prose_key
from testbed.data.real import DEFAULT_OUT as REAL_OUT
from testbed.data.real import SPLITS, split_of, up_to_date
from testbed.data.real_text import read_man_page, roff_paragraphs
from testbed.errors import TestbedError
from testbed.io import atomic_dir, write_json
from testbed.paths import REPO_ROOT

DEFAULT_OUT = REAL_OUT / "docs" / "en"
DEFAULT_DEBS = REPO_ROOT / ".cache" / "docs-debs"  # the downloaded .deb files, kept
DEFAULT_ROOT = REPO_ROOT / ".cache" / "docs-root"  # one unpacked tree per package
VERSION = 2  # bump when the extraction or cleaning changes: part of the fingerprint
DOC_CHARS = 8000  # a page's prose is cut into documents of at most this many characters (whole paragraphs)
MIN_DOC_WORDS = 30  # shorter documents (a page with one short paragraph left) are dropped
MARKER = ".deb.json"  # in each unpacked package: {package, version, deb}
# Debian (12, bookworm) documentation packages and where their HTML is (prefixes inside the package; "" all).
PACKAGES: dict[str, tuple[str, ...]] = {
    "aptitude-doc-en": ("",),
    "apt-doc": ("",),
    "autoconf-doc": ("",),
    "bash-doc": ("",),
    "bind9-doc": ("",),
    "debian-faq": ("",),
    "debian-handbook": ("",),
    "debian-policy": ("",),
    "debian-reference-en": ("",),
    "developers-reference": ("",),
    "erlang-doc": ("",),
    "exim4-doc-html": ("",),
    "gimp-help-en": ("",),
    "git-doc": ("",),
    "gnu-standards": ("",),
    "installation-guide-amd64": ("",),
    "kicad-doc-en": ("",),
    "libreoffice-help-en-us": ("",),
    "linux-doc-6.1": ("",),
    "maint-guide": ("",),
    "maxima-doc": ("",),
    "nodejs-doc": ("",),
    "octave-doc": ("",),
    "perl-doc": (),  # its manual is the man pages (perlfunc, perlre, ... and the modules')
    "postfix-doc": ("",),
    "postgresql-doc-15": ("",),
    "python-django-doc": ("",),
    "python-pandas-doc": ("",),
    "python-scipy-doc": ("",),
    "python-sklearn-doc": ("",),
    "python-sqlalchemy-doc": ("",),
    "python3.11-doc": ("",),
    "r-doc-html": ("",),
    "rust-doc": tuple(
        f"usr/share/doc/rust-doc/html/{book}/"
        for book in (
            "book",
            "reference",
            "rust-by-example",
            "nomicon",
            "cargo",
            "rustc",
            "edition-guide",
            "embedded-book",
            "rustdoc",
        )
    ),  # fmt: skip
    "sphinx-doc": ("",),
    "sqlite3-doc": ("",),
    "tcl8.6-doc": ("",),
    # man and info pages only (no HTML): the manual pages and the core tools', fetched like the manuals above so
    # that the corpus is the same on every machine (the host's installed pages are read only with `system`)
    "manpages": (),
    "manpages-dev": (),
    "coreutils": (),
    "bash": (),
    "findutils": (),
    "gettext": (),
    "iproute2": (),
    "openssl": (),
    "systemd": (),
    "util-linux": (),
    "cmake-data": (),
}
# Installed packages whose pages are left out: not Debian's (Google's repository), 16k generated references.
EXCLUDED_PACKAGES = frozenset({"google-cloud-cli"})
SYSTEM_MAN = ("usr/share/man/man[1-8]/*",)  # English pages; translations are under usr/share/man/<lang>/
PACKAGE_MAN = ("usr/share/man/man[1-8]/*", "usr/share/*/*/man/man[1-8]/*")  # PostgreSQL's are versioned
INFO = ("usr/share/info/*.info*",)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
# Pages that are indexes, search pages, sources or whole-book duplicates; translations (a language code as a
# path component or a name's dotted part: html/fr-FR/, ch01.fr.html, guide.pt.html/, translations/).
SKIP_PATH = re.compile(
    r"(?:^|/)(?:_sources|_static|_images|translations|genindex[^/]*|py-modindex\.html|search\.html|"
    r"searchindex[^/]*|print\.html|all\.html)(?:/|$)"
    r"|(?:^|[/.])(?:ar|bg|ca|cs|da|de|el|es|et|eu|fa|fi|fr|gl|he|hr|hu|id|it|ja|ko|lt|nb|nl|pl|pt|ro|ru|sk|sl|sr|"
    r"sv|th|tr|uk|vi|zh|zh_cn|zh_tw|pt_br)(?:[-_][A-Za-z]{2})?(?=[/.]|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Page:
    """One input file: which package it belongs to, its name within the package, how to read it."""

    package: str
    name: str  # path inside the package or the system root: the split's key
    path: Path
    format: str  # html | man | info


# --- fetching -------------------------------------------------------------------------------------


def fetch_packages(
    packages: tuple[str, ...] = tuple(PACKAGES), debs: Path = DEFAULT_DEBS, root: Path = DEFAULT_ROOT
) -> list[str]:
    """Download the packages' .deb files into `debs` (kept) and unpack each into root/<package>.

    Without root and without installing anything. Packages already downloaded and unpacked are left
    alone (no apt call). Returns one line per thing done or failed; a package apt cannot fetch is a
    warning, and the corpus is then built without it.
    """
    debs.mkdir(parents=True, exist_ok=True)
    notes = []
    missing = [p for p in packages if _deb_of(debs, p) is None]
    if missing and not _download(missing, debs):  # one at a time, so that one bad name spoils only itself
        for package in missing:
            if not _download([package], debs):
                notes.append(f"warning: apt-get download {package} failed; building without it")
    for package in packages:
        deb = _deb_of(debs, package)
        if deb is None or _unpacked(root, package) == deb.name:
            continue
        try:
            atomic_dir(root / package, lambda staging, deb=deb: _unpack(deb, staging))  # type: ignore[misc]
        except (OSError, subprocess.CalledProcessError) as err:
            notes.append(f"warning: dpkg -x {deb.name} failed ({err}); building without it")
            continue
        notes.append(f"unpacked {deb.name}")
    return notes


def _deb_of(debs: Path, package: str) -> Path | None:
    found = sorted(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _download(packages: list[str], debs: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix=".download-", dir=debs) as staging:
        fetched = subprocess.run(["apt-get", "download", *packages], cwd=staging, capture_output=True, text=True)
        if fetched.returncode != 0:
            return False
        for deb in Path(staging).glob("*.deb"):
            deb.rename(debs / deb.name)  # whole files only: a killed download leaves nothing here
    return True


def _unpack(deb: Path, staging: Path) -> None:
    subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, capture_output=True)
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Package", "Version"], check=True, capture_output=True, text=True
    ).stdout
    info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    (staging / MARKER).write_text(json.dumps({"package": info["Package"], "version": info["Version"], "deb": deb.name}))


def _unpacked(root: Path, package: str) -> str | None:
    try:
        return json.loads((root / package / MARKER).read_text())["deb"]
    except (OSError, ValueError, KeyError):
        return None


# --- inputs ---------------------------------------------------------------------------------------


def unpacked_packages(root: Path) -> dict[str, dict]:
    """{package: {package, version, deb}} of every package unpacked under `root`."""
    found = {}
    for marker in sorted(Path(root).glob(f"*/{MARKER}")):
        try:
            found[marker.parent.name] = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise TestbedError(f"{marker}: not a package marker ({err})") from None
    return found


def package_pages(root: Path, package: str, html_prefixes: tuple[str, ...]) -> list[Page]:
    """The HTML pages (under the given prefixes), man pages and info manuals of one unpacked package."""
    base = Path(root) / package
    pages = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
        name = path.relative_to(base).as_posix()
        if SKIP_PATH.search(name):
            continue
        if name.endswith(HTML_SUFFIXES) and any(name.startswith(prefix) for prefix in html_prefixes):
            pages.append(Page(package, name, path, "html"))
    pages += [Page(package, p.relative_to(base).as_posix(), p, "man") for p in _glob(base, PACKAGE_MAN)]
    pages += [Page(package, p.relative_to(base).as_posix(), p, "info") for p in _glob(base, INFO)]
    return pages


def system_files(system: Path) -> list[Path]:
    return _glob(system, SYSTEM_MAN) + _glob(system, INFO)


def system_pages(system: Path, owners: dict[str, str]) -> list[Page]:
    """The machine's English man pages and info manuals, each under the package that owns it."""
    pages = []
    for path in system_files(system):
        name = path.relative_to(system).as_posix()
        package = owners.get("/" + name, "local")
        if package not in EXCLUDED_PACKAGES:
            pages.append(Page(package, name, path, "info" if "/info/" in f"/{name}" else "man"))
    return pages


def _glob(base: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in base.glob(pattern) if p.is_file()})


def dpkg_owners(admin: Path = Path("/var/lib/dpkg")) -> dict[str, str]:
    """file path -> the installed package that owns it, from dpkg's file lists."""
    owners = {}
    for listing in sorted((admin / "info").glob("*.list")):
        package = listing.stem.split(":")[0]
        for line in listing.read_text(errors="replace").splitlines():
            owners[line] = package
    return owners


def dpkg_versions(admin: Path = Path("/var/lib/dpkg")) -> dict[str, str]:
    """package -> version of the installed packages (dpkg's status file)."""
    versions, package = {}, None
    status = admin / "status"
    for line in status.read_text(errors="replace").splitlines() if status.is_file() else ():
        if line.startswith("Package: "):
            package = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and package:
            versions[package] = line.split(": ", 1)[1]
    return versions


def fingerprint(root: Path, system: Path | None) -> str:
    """A hash of the builder version, the unpacked packages (by .deb file) and the system's page directories
    (their modification times: dpkg adds, replaces and removes pages by renaming, which changes them)."""
    digest = hashlib.sha256(json.dumps([VERSION, unpacked_packages(root), sorted(PACKAGES)]).encode())
    patterns = [p.rpartition("/")[0] for p in SYSTEM_MAN + INFO] if system is not None else []
    for folder in sorted({f for pattern in patterns for f in Path(system or "/").glob(pattern)}):
        digest.update(f"{folder}\0{folder.stat().st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --- reading --------------------------------------------------------------------------------------


def paragraphs(page: Page) -> list[str]:
    """The prose paragraphs of one page (not yet deduplicated); [] for an unreadable file."""
    try:
        raw = page.path.read_bytes()
        if page.path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError):
        return []
    if page.format == "man":
        source = read_man_page(page.path)
        found = roff_paragraphs(source) if source is not None else []
    else:
        text = raw.decode("utf-8", errors="replace")
        found = html_paragraphs(text) if page.format == "html" else info_paragraphs(text)
    return [p for p in (" ".join(p.split()) for p in found) if is_prose(p)]


def documents(kept: list[str]) -> Iterator[str]:
    """A page's kept paragraphs in documents of at most DOC_CHARS characters (one newline between
    paragraphs; a longer paragraph is a document alone); documents under MIN_DOC_WORDS words are dropped."""
    current: list[str] = []
    size = 0
    for paragraph in [*kept, None]:
        if current and (paragraph is None or size + len(paragraph) + 1 > DOC_CHARS):
            text = "\n".join(current)
            if len(text.split()) >= MIN_DOC_WORDS:
                yield text
            current, size = [], 0
        if paragraph is not None:
            current.append(paragraph)
            size += len(paragraph) + 1


# --- the build ------------------------------------------------------------------------------------


def build(
    out_dir: Path = DEFAULT_OUT,
    root: Path = DEFAULT_ROOT,
    system: Path | None = None,
    dpkg_admin: Path = Path("/var/lib/dpkg"),
    seed: int = 0,
    force: bool = False,
) -> dict:
    """Build (or find up to date) the corpus in `out_dir` from the packages unpacked under `root` and the
    man and info pages installed under `system` (None, the default: none, so that the corpus does not depend
    on what the machine has installed); returns its manifest."""
    out_dir, root = Path(out_dir), Path(root)
    if system is not None and not Path(system).is_dir():
        raise TestbedError(f"{system}: no such directory (the system root to read man and info pages from)")
    stamp = fingerprint(root, system)
    current = None if force else up_to_date(out_dir, stamp)
    if current is not None:
        return current
    unpacked = unpacked_packages(root)
    pages = [p for name in sorted(unpacked) for p in package_pages(root, name, PACKAGES.get(name, ("",)))]
    if system is not None:
        pages += system_pages(Path(system), dpkg_owners(dpkg_admin))
    if not pages:
        raise TestbedError(f"{root}: no documentation pages (make real-data fetches the packages)")
    corpus = _Corpus()
    for page in pages:
        corpus.add(page)
    versions = {name: info["version"] for name, info in unpacked.items()}
    installed = dpkg_versions(dpkg_admin)
    versions.update({p: installed.get(p, "?") for p in corpus.packages if p not in versions})
    manifest = {
        "fingerprint": stamp,
        "version": VERSION,
        "seed": seed,
        "packages": {p: versions[p] for p in sorted(corpus.packages)},
        "debs": {name: info["deb"] for name, info in sorted(unpacked.items())},
        "counts": corpus.counts(),
    }
    return _write(out_dir, corpus, manifest, random.Random(seed))


class _Corpus:
    """Documents per split, with every paragraph kept once, and what was read, kept and dropped."""

    def __init__(self) -> None:
        self.docs: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self.seen_paragraphs: set[str] = set()
        self.seen_files: set[str] = set()  # content hashes
        self.packages: set[str] = set()
        self.per_package: dict[str, Counter] = {}
        self.dropped: Counter[str] = Counter()

    def add(self, page: Page) -> None:
        stats = self.per_package.setdefault(page.package, Counter())
        try:
            identity = hashlib.blake2b(page.path.read_bytes(), digest_size=16).hexdigest()
        except OSError:
            return
        stats["files"] += 1
        if identity in self.seen_files:  # the same file again (a link, a copy under another package)
            self.dropped["duplicate files"] += 1
            return
        self.seen_files.add(identity)
        kept = []
        for paragraph in paragraphs(page):
            key = prose_key(paragraph)
            if key in self.seen_paragraphs:
                self.dropped["duplicate paragraphs"] += 1
                continue
            self.seen_paragraphs.add(key)
            kept.append(paragraph)
        split = split_of(f"{page.package}:{page.name}")
        for text in documents(kept):
            self.docs[split].append({"text": text, "origin": page.package})
            self.packages.add(page.package)
            stats[f"{split} documents"] += 1
            stats[f"{split} words"] += len(text.split())
            stats[f"{split} characters"] += len(text)

    def counts(self) -> dict:
        totals: dict[str, dict[str, int]] = {s: {"documents": 0, "words": 0, "characters": 0} for s in SPLITS}
        types: set[str] = set()
        for split, rows in self.docs.items():
            for row in rows:
                words = row["text"].split()
                totals[split]["documents"] += 1
                totals[split]["words"] += len(words)
                totals[split]["characters"] += len(row["text"])
                types.update(words)
        return {
            "splits": totals,
            "word_types": len(types),  # distinct whitespace-separated words over all splits
            "dropped": dict(self.dropped),
            "packages": {p: dict(sorted(c.items())) for p, c in sorted(self.per_package.items()) if c},
        }


def _write(out_dir: Path, corpus: _Corpus, manifest: dict, rng: random.Random) -> dict:
    def write(staging: Path) -> None:
        for split, rows in corpus.docs.items():
            rng.shuffle(rows)
            with open(staging / f"{split}.jsonl", "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json(staging / "manifest.json", manifest)

    atomic_dir(out_dir, write)
    return manifest


def summary(manifest: dict, out_dir: Path, seconds: float) -> str:
    counts = manifest["counts"]
    lines = [f"docs_en corpus in {out_dir} ({seconds:.1f} s; {len(manifest['packages'])} packages)"]
    for split, c in counts["splits"].items():
        lines.append(
            f"  {split:5s} {c['documents']:>9,} documents {c['words']:>12,} words {c['characters']:>13,} chars"
        )
    lines.append(f"  word types {counts['word_types']:,}; dropped {counts['dropped']}")
    for split, c in manifest.get("tokens", {}).get("splits", {}).items():
        lines.append(f"  {split:5s} {c['tokens']:>12,} tokens ({manifest['tokens']['tokenizer']})")
    return "\n".join(lines)
