"""docs_en: prose out of documentation packages (a tiny fake package tree), deduplicated and split by page;
and a run's epochs: refused past one pass without data.allow_repeat, repeated and reported with it."""

import gzip
import json

import pytest

from testbed.data import docs, prose, sources
from testbed.data.real import split_of
from testbed.data.sources import load_registry
from testbed.data.stream import CorpusTooSmall, TokenStream
from testbed.data.tokenizer import load_tokenizer, tokenizer_key
from testbed.ladder import plan_run
from testbed.paths import CONFIG_ROOT
from testbed.resolve import load_run_config
from testbed.results import read_rows
from testbed.train import train

P1 = "The package manager keeps a list of installed software and resolves the dependencies between packages."
P2 = "When an upgrade fails half way, the previous version stays in place and the error names the package."
P3 = "Configuration files that the administrator changed are never overwritten without asking first, ever."
MAN = "This tool prints the version of every installed package together with the date of its installation."
MAN2 = "Without arguments it lists every package; with the names of packages, only those, in the order given."
INFO = "Info manuals are divided into nodes, and every node holds a few paragraphs of explanation like this one."
HTML = f"""<html><head><title>Guide</title><script>var x = 1;</script></head><body>
<div class="related" role="navigation"><ul><li><a href="a.html">
Previous chapter about the installation steps and more</a></li></ul></div>
<div class="body" role="main">
<h1>The package guide for administrators of many machines</h1>
<p>{P1}</p>
<div class="highlight"><pre>apt-get install --reinstall foo  # this is code, not prose at all.</pre></div>
<p>{P2}
</p><table><tr><td>--force</td><td>Force the operation even if it is not a good idea at all.</td></tr></table>
<p>Short line.</p>
<p>See <a href="x.html">the long chapter about configuration files and their many options</a>.</p>
<ul><li>{P3}</li></ul>
<p>{{ "json": true, "code": [1, 2, 3], "more": "symbols; everywhere = bad" }} and some words after.</p>
</div></body></html>"""
ROFF = f""".TH TOOL 1
.SH NAME
tool \\- print versions
.SH DESCRIPTION
{MAN}
.PP
{P1}
.nf
tool --all --verbose --format=long and other options of the program
.fi
.PP
{MAN2}
"""


def fake_tree(tmp_path):
    """One unpacked package (HTML page, its French translation, a man page) and a system root with a man
    page, an info manual and a page of an excluded package, with dpkg's file lists and status."""
    root, system, admin = tmp_path / "root", tmp_path / "system", tmp_path / "dpkg"
    pkg = root / "pkgdoc"
    (pkg / "usr/share/doc/pkgdoc/html/fr-FR").mkdir(parents=True)
    (pkg / "usr/share/doc/pkgdoc/html/guide.html").write_text(HTML)
    (pkg / "usr/share/doc/pkgdoc/html/fr-FR/guide.html").write_text(HTML.replace("package", "paquet"))
    (pkg / "usr/share/man/man1").mkdir(parents=True)
    (pkg / "usr/share/man/man1/tool.1.gz").write_bytes(gzip.compress(ROFF.encode()))
    (pkg / docs.MARKER).write_text(json.dumps({"package": "pkgdoc", "version": "1.0-1", "deb": "pkgdoc_1.0-1_all.deb"}))
    (system / "usr/share/man/man1").mkdir(parents=True)
    (system / "usr/share/info").mkdir(parents=True)
    other = f".TH OTHER 1\n.SH DESCRIPTION\n{MAN}\n.PP\n{P3}\n.PP\n{P2}\n"  # every paragraph seen before
    (system / "usr/share/man/man1/other.1").write_text(other)
    cloud = ".TH GCLOUD 1\n.SH DESCRIPTION\n" + " ".join([P1, P2, P3]).replace("package", "cloud") + "\n"
    (system / "usr/share/man/man1/gcloud.1").write_text(cloud)
    info = f"\x1fFile: x.info, Node: Top, Next: Intro\n\nx\n*\n\n{INFO} {INFO}\n\n* Menu:\n\n* Intro::  The intro.\n"
    info += "\n     indented example line that is code and stays out of the corpus.\n\x1fTag Table:\n"
    (system / "usr/share/info/x.info.gz").write_bytes(gzip.compress(info.encode()))
    (admin / "info").mkdir(parents=True)
    (admin / "info/otherpkg.list").write_text("/usr/share/man/man1/other.1\n/usr/share/info/x.info.gz\n")
    (admin / "info/google-cloud-cli.list").write_text("/usr/share/man/man1/gcloud.1\n")
    (admin / "status").write_text("Package: otherpkg\nVersion: 2.5\n\nPackage: google-cloud-cli\nVersion: 9\n")
    return root, system, admin


def read_split(out, split):
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_html_keeps_prose_and_drops_code_navigation_and_tables():
    kept = [p for p in prose.html_paragraphs(HTML) if prose.is_prose(p)]
    assert kept == [P1, P2, P3]
    assert prose.prose_key(P1) == prose.prose_key(P1.upper().replace(",", " ;"))


def test_builder_on_a_tiny_package_tree(tmp_path):
    root, system, admin = fake_tree(tmp_path)
    out = tmp_path / "out"
    manifest = docs.build(out, root=root, system=system, dpkg_admin=admin)
    rows = {split: read_split(out, split) for split in ("train", "valid", "test")}
    found = {(r["origin"], r["text"]) for split_rows in rows.values() for r in split_rows}
    # the page's three prose paragraphs (not its code, table, navigation, heading, link list or short line);
    # the man page's two new ones (P1 is a duplicate); the info manual's one; the system's man page only
    # repeats, the translation and the excluded package's page are not read
    assert found == {
        ("pkgdoc", "\n".join([P1, P2, P3])),
        ("pkgdoc", "\n".join([MAN, MAN2])),
        ("otherpkg", f"{INFO} {INFO}"),
    }
    pages = {
        "\n".join([P1, P2, P3]): "usr/share/doc/pkgdoc/html/guide.html",
        f"{INFO} {INFO}": "usr/share/info/x.info.gz",
    }
    for split, split_rows in rows.items():  # each document sits in the split of its page's name
        for row in split_rows:
            assert split_of(f"{row['origin']}:{pages.get(row['text'], 'usr/share/man/man1/tool.1.gz')}") == split
    counts = manifest["counts"]
    assert sum(c["documents"] for c in counts["splits"].values()) == 3
    assert counts["dropped"] == {"duplicate paragraphs": 4}  # P1 in tool.1; MAN, P3 and P2 in other.1
    assert manifest["packages"] == {"otherpkg": "2.5", "pkgdoc": "1.0-1"}
    assert counts["packages"]["pkgdoc"]["files"] == 2  # the page and the man page; not the translation
    assert sum(c.get("train documents", 0) for c in counts["packages"].values()) == len(rows["train"])
    assert "google-cloud-cli" not in counts["packages"]
    assert counts["word_types"] == len({w for r in found for w in r[1].split()})
    # idempotent: up to date, nothing is rewritten; forced, the same files again
    before = {s: (out / f"{s}.jsonl").read_bytes() for s in rows}
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert docs.build(out, root=root, system=system, dpkg_admin=admin) == manifest
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    docs.build(out, root=root, system=system, dpkg_admin=admin, force=True)
    assert {s: (out / f"{s}.jsonl").read_bytes() for s in rows} == before


def test_documents_are_cut_at_paragraphs():
    paragraph, short = " ".join(["word"] * 999), "too short to stand alone."  # 4994 and 25 characters
    assert [len(d) for d in docs.documents([paragraph, paragraph, short])] == [4994, 4994 + 1 + 25]
    assert list(docs.documents([short])) == []


TINY = "\n".join(f"Line {i} of a tiny corpus that a run reads more than once when it may." for i in range(350))


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """The project's data registry plus a source `tiny` of a few thousand tokens."""
    for split in ("train", "valid"):
        (tmp_path / f"{split}.txt").write_text(TINY + "\n")
    extra = tmp_path / "tiny.yaml"
    files = {split: str(tmp_path / f"{split}.txt") for split in ("train", "valid")}
    extra.write_text(json.dumps({"sources": {"tiny": {"kind": "local", "language": "en", "splits": files}}}))
    registry = load_registry([*sorted((CONFIG_ROOT / "data").glob("*.yaml")), extra])
    monkeypatch.setattr(sources, "registry", lambda: registry)
    return registry


def tiny_config(runs_dir, *extra):
    overrides = ["data.name=tiny", "data.mixture={tiny: 1.0}", "data.validation=[tiny]", "data.val_tokens=256"]
    return load_run_config(None, [*overrides, "model.size=s1", "train.multiplier=1", f"out_dir={runs_dir}", *extra])


def train_tokens(registry, vocab_size: int) -> int:
    tokenizer = load_tokenizer(vocab_size, 0)  # the synthetic corpus's: no corpus covers `tiny`
    return TokenStream(registry.sources["tiny"], "train", tokenizer, tokenizer_key(vocab_size, 0), 0).total()


def test_a_run_repeats_its_data_only_when_allowed_and_reports_its_epochs(tiny_registry, runs_dir):
    config = tiny_config(runs_dir)
    plan = plan_run(config)
    total = train_tokens(tiny_registry, plan.vocab_size)
    assert plan.tokens > 2 * total  # the budget takes more than two passes
    with pytest.raises(CorpusTooSmall, match=r"epochs of it; .*\(or set data.allow_repeat=true\)"):
        train(config, progress=False)
    config = tiny_config(runs_dir / "repeat", "data.allow_repeat=true")
    run_dir = train(config, progress=False)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["epochs"] == pytest.approx(plan.tokens / total)
    assert meta["tokens_by_source"] == {"tiny": plan.tokens}
    rows = read_rows(run_dir)
    assert {r["epochs"] for r in rows} == {meta["epochs"]}
    losses = [r["value"] for r in rows if r["kind"] == "val_loss"]
    assert losses[-1] < losses[0]


def test_a_run_within_its_corpus_reports_epochs_below_one(tiny_registry, runs_dir):
    config = tiny_config(runs_dir, "train.multiplier=0.3")
    plan = plan_run(config)
    run_dir = train(config, progress=False)
    epochs = json.loads((run_dir / "meta.json").read_text())["epochs"]
    assert epochs == pytest.approx(plan.tokens / train_tokens(tiny_registry, plan.vocab_size))
    assert 0.5 < epochs < 1
    assert {r["epochs"] for r in read_rows(run_dir)} == {epochs}
