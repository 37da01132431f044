"""Real text offline: catalogs and man pages -> cleaned, split corpus; pair counts; a run trains on it."""

import gzip
import json
import struct

import pytest

from testbed.data import readers, real, real_text
from testbed.data.sources import known_parallel
from testbed.ladder import plan_run
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.train import train

# Floors below what this machine's own files give (Debian 12 image, no extra packages: 18,242 / 23,756 /
# 9,433 pairs), so CI holds without apt; with `make real-data`'s packages: 26,684 / 33,371 / 15,338.
PAIR_FLOORS = {"en-de": 15_000, "en-fr": 20_000, "en-ro": 8_000}


def write_mo(path, entries: dict[bytes, bytes], charset="UTF-8"):
    """A binary gettext catalog (what msgfmt writes), from raw msgid -> msgstr bytes."""
    items = sorted({b"": f"Content-Type: text/plain; charset={charset}\n".encode(), **entries}.items())
    n = len(items)
    ids, strs, blob = [], [], b""
    start = 28 + 16 * n
    for table, pick in ((ids, 0), (strs, 1)):
        for item in items:
            table.append((len(item[pick]), start + len(blob)))
            blob += item[pick] + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(struct.pack("<2I", *e) for e in ids + strs) + blob)


ROFF = r""".\" a comment
.TH LS 1 "2022" "GNU coreutils"
.SH NAME
ls \- list directory contents
.SH DESCRIPTION
.PP
List information about the FILEs (the current directory by default). Sort entries
alphabetically if none of \fB\-cftuvSUX\fP nor \fB\-\-sort\fP is specified.
.nf
  ls -la /tmp
.fi
.TP
.BR \-a ", " \-\-all
do not ignore entries starting with \(lq.\(rq and the user\*(Aqs files
"""


def test_roff_paragraphs():
    assert real_text.roff_paragraphs(ROFF) == [
        "ls - list directory contents",
        "List information about the FILEs (the current directory by default). Sort entries alphabetically "
        "if none of -cftuvSUX nor --sort is specified.",
        "-a, --all do not ignore entries starting with \u201c.\u201d and the user's files",
    ]


def test_cleaning_drops_placeholders_markup_and_short_segments():
    assert real_text.clean("Cannot open %s: %d bytes") is None
    assert real_text.clean("Deleted {0} files from {folder}") is None
    assert real_text.clean("Open _File in a new window") == "Open File in a new window"
    assert real_text.clean("<b>Bold</b> text &amp; more words") == "Bold text & more words"
    assert real_text.clean("~Insert the picture here") == "Insert the picture here"
    assert real_text.clean("Open file") is None  # fewer than three words
    assert real_text.clean("-a -b -c --dd=1 --ee=2 | 3") is None  # mostly not letters
    assert real_text.clean("Use 100% of the disk space") == "Use 100% of the disk space"


def fake_root(tmp_path):
    """A file-system root with a few catalogs in de and ro and one translated man page."""
    root = tmp_path / "root"
    sentences = {
        f"The file number {i} could not be opened".encode(): f"Die Datei Nummer {i} ließ sich nicht öffnen".encode()
        for i in range(60)
    }
    write_mo(
        root / "usr/share/locale/de/LC_MESSAGES/app.mo",
        {
            **sentences,
            b"Cannot read %s here": b"Kann %s hier nicht lesen",
            b"Quit": b"Beenden",
            b"menu\x04Save the document now": b"Das Dokument jetzt speichern",
            b"One file removed\x00%d files removed": b"Eine Datei\x00%d Dateien",
        },
    )
    write_mo(
        root / "usr/share/locale/de/LC_MESSAGES/broken.mo",  # declared UTF-8, one Latin-1 entry
        {b"Show all hidden files here": b"Alle versteckten Dateien hier anzeigen", b"Size of the data": b"Gr\xf6\xdfe"},
    )
    write_mo(
        root / "usr/share/locale/ro/LC_MESSAGES/app.mo",
        {b"Save the document now": "Salvează documentul acum".encode("iso-8859-2")},
        charset="ISO-8859-2",
    )
    for lang in ("de", ""):
        page = root / "usr/share/man" / lang / "man1/ls.1.gz"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_bytes(gzip.compress(ROFF.encode()))
    return root


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_builder_on_a_fake_root_is_deterministic_aligned_and_idempotent(tmp_path):
    root = fake_root(tmp_path)
    manifest = real.build(tmp_path / "a", roots=[root], languages=("en", "de", "ro"))
    real.build(tmp_path / "b", roots=[root], languages=("en", "de", "ro"))
    for path in sorted((tmp_path / "a").rglob("*.jsonl")):  # the same inputs give the same corpus
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()

    pairs = {split: read_jsonl(tmp_path / "a/pairs/en-de" / f"{split}.jsonl") for split in real.SPLITS}
    everything = [p["translation"] for split in pairs.values() for p in split]
    assert sorted(manifest["counts"]["pairs"]["en-de"].values()) == sorted(len(v) for v in pairs.values())
    assert len(everything) == 62  # 60 sentences + "Save ..." (context stripped) + "Show ..."; not %s, short, plural
    for split, rows in pairs.items():  # aligned: the sentence numbers agree, the split follows the English
        for row in rows:
            en, de = row["translation"]["en"], row["translation"]["de"]
            assert real.split_of(en.casefold()) == split
            if en.startswith("The file number"):
                assert en.split()[3] == de.split()[3]
    assert {"en": "Show all hidden files here", "de": "Alle versteckten Dateien hier anzeigen"} in everything
    assert read_jsonl(tmp_path / "a/pairs/en-ro" / f"{real.split_of('save the document now')}.jsonl")[0][
        "translation"
    ] == {"en": "Save the document now", "ro": "Salvează documentul acum"}
    mono_de = [r for split in real.SPLITS for r in read_jsonl(tmp_path / f"a/mono/de/{split}.jsonl")]
    assert sum(r["origin"] == "man:ls.1" for r in mono_de) == 1 and len(mono_de) == 63

    stamp = (tmp_path / "a/manifest.json").stat().st_mtime_ns
    assert real.build(tmp_path / "a", roots=[root], languages=("en", "de", "ro")) == manifest
    assert (tmp_path / "a/manifest.json").stat().st_mtime_ns == stamp  # up to date: not rewritten


@pytest.fixture(scope="module")
def corpus():
    return real.ensure_corpus()


def test_real_corpus_pair_counts_on_this_machine(corpus):
    counts = corpus["counts"]
    for pair, floor in PAIR_FLOORS.items():
        assert sum(counts["pairs"][pair].values()) >= floor, (pair, counts["pairs"][pair])
        assert counts["pairs"][pair]["test"] >= 0.03 * floor and counts["pairs"][pair]["valid"] >= 0.03 * floor
    for lang in real.LANGUAGES:
        assert counts["mono"][lang]["train"] > 5000
    # the registered parallel corpora read what the manifest promised, and test pairs stay out of training
    test_pairs = readers.pairs(known_parallel()["real_en_de"], "test")
    assert len(test_pairs) == counts["pairs"]["en-de"]["test"]
    train_text = {r["text"] for r in read_jsonl(real.DEFAULT_OUT / "mono/de/train.jsonl")}
    assert not any(de in train_text for _, de in test_pairs)


def test_a_run_trains_and_validates_on_real_text(corpus, runs_dir):
    config = load_run_config(
        None,
        ["data.name=real_en_de", "model.size=s1", "train.multiplier=1", "data.val_tokens=2048", f"out_dir={runs_dir}"],
    )
    run_dir = train(config, progress=False)
    rows = read_rows(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert set(meta["tokens_by_source"]) == {"real_en", "real_de"}
    val = [r for r in rows if r["kind"] == "val_loss"]
    final = {r["name"]: r["value"] for r in val if r["final"]}
    assert set(final) == {"real_en", "real_de", "real_fr", "real_ro"}  # its own mixture's and the others
    first_step = min(r["step"] for r in val)
    first = {r["name"]: r["value"] for r in val if r["step"] == first_step}
    assert final["real_en"] < first["real_en"] and final["real_de"] < first["real_de"]
    tokens = {
        r["name"]: r["value"] for r in rows if r["kind"] == "train" and r.get("metric") == "tokens" and r["final"]
    }
    assert sum(tokens.values()) == meta["tokens_seen"]
    assert abs(tokens["real_en"] - 0.5 * meta["tokens_seen"]) <= plan_run(config).seq_len  # within one row
