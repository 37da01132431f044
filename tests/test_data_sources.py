"""Sources behind one interface (local files, the hub path fed local files, synthetic) and token shards."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from testbed.data import readers
from testbed.data.sources import (
    BLOCK_DOCS,
    known_sources,
    load_registry,
    resolve_tokenizer,
    validation_sources,
)
from testbed.data.stream import TokenStream
from testbed.data.tokenizer import EOS, load_tokenizer, tokenizer_key
from testbed.errors import TestbedError

DOCS = [
    "Grüße aus Köln, ein Dokument.",
    "Un deuxième texte, déjà écrit.",
    "Al treilea: știință și țară 🙂",
    "fourth line",
]


def registry(tmp_path, **sections):
    """A registry of one data config written from `sections` (JSON is YAML)."""
    path = tmp_path / "data.yaml"
    path.write_text(json.dumps(sections))
    return load_registry([path])


def local(files, split="train", **keys):
    return {"kind": "local", "language": "xx", "splits": {split: files}, **keys}


def hub(builder, files, split="train", **keys):
    return {
        "kind": "hub",
        "language": "xx",
        "path": builder,
        "splits": {
            split: {"split": "train", "files": files, **{k: keys.pop(k) for k in ("skip", "take") if k in keys}}
        },
        **keys,
    }


def write_jsonl(path, docs, field="text"):
    path.write_text("".join(json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(512, 0), tokenizer_key(512, 0)


def test_local_formats_globs_and_the_hub_path_give_the_same_documents(tmp_path):
    write_jsonl(tmp_path / "part-0.jsonl", DOCS[:2], field="body")
    write_jsonl(tmp_path / "part-1.jsonl", DOCS[2:], field="body")
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n\n")  # a blank line is no document
    pq.write_table(pa.table({"body": DOCS}), tmp_path / "docs.parquet")
    reg = registry(
        tmp_path,
        sources={
            "jsonl": local(f"{tmp_path}/part-*.jsonl", text_field="body"),
            "txt": local(f"{tmp_path}/docs.txt"),
            "parquet": local([f"{tmp_path}/docs.parquet"], text_field="body"),
            "hub": hub("json", [f"{tmp_path}/part-0.jsonl", f"{tmp_path}/part-1.jsonl"], text_field="body"),
            "hub_window": hub("parquet", [f"{tmp_path}/docs.parquet"], "valid", skip=1, take=2, text_field="body"),
        },
    )
    for name in ("jsonl", "txt", "parquet", "hub"):
        assert list(readers.documents(reg.sources[name], "train")) == DOCS, name
    assert list(readers.documents(reg.sources["hub_window"], "valid")) == DOCS[1:3]
    assert list(readers.documents(reg.sources["jsonl"], "train", start=3)) == DOCS[3:]
    # the cache key is the content: the same files under another source name share one cache entry
    assert readers.definition(reg.sources["jsonl"], "train", 0)["files"] == [
        readers.file_digest(tmp_path / "part-0.jsonl"),
        readers.file_digest(tmp_path / "part-1.jsonl"),
    ]


def test_shards_round_trip_to_the_original_text(tmp_path, tokenizer, monkeypatch):
    tok, key = tokenizer
    docs = [
        f"{DOCS[i % 4]} #{i}" + (f" literal {EOS} stays text\nnext line" if i % 7 == 0 else "")
        for i in range(2 * BLOCK_DOCS + 345)
    ]
    write_jsonl(tmp_path / "corpus.jsonl", docs)
    source = registry(tmp_path, sources={"c": local(f"{tmp_path}/corpus.jsonl")}).sources["c"]
    stream = TokenStream(source, "train", tok, key, 0)
    with pytest.raises(Exception, match="2.345 documents"):
        stream.ensure(10**9)  # the whole corpus, then the end of it
    flat = np.concatenate(stream.blocks)
    assert flat[-1] == tok.eos_token_id and np.count_nonzero(flat == tok.eos_token_id) == len(docs)
    ends = np.flatnonzero(flat == tok.eos_token_id)
    decoded = [tok.decode(flat[a + 1 : b].tolist()) for a, b in zip([-1, *ends[:-1]], ends, strict=True)]
    assert decoded == docs

    index = json.loads((stream.dir / "index.json").read_text())
    assert index["complete"] and index["documents"] == len(docs) and index["tokens"] == len(flat)
    assert [s["docs"] for s in index["shards"]] == [BLOCK_DOCS, BLOCK_DOCS, 345]
    assert sorted(p.name for p in stream.dir.iterdir()) == ["00000.npy", "00001.npy", "00002.npy", "index.json"]

    # A second stream (another run of the sweep) reads the memory-mapped shards without tokenizing.
    monkeypatch.setattr(readers, "documents", lambda *a, **k: pytest.fail("tokenized twice"))
    again = TokenStream(source, "train", tok, key, 0)
    again.ensure(len(flat))
    assert isinstance(again.blocks[0], np.memmap) and np.array_equal(np.concatenate(again.blocks), flat)
    assert again.dir == stream.dir


def test_same_seed_same_corpus(tokenizer):
    tok, key = tokenizer
    source = known_sources()["syn_fr"]
    a, b = (TokenStream(source, "valid", tok, key, 0) for _ in range(2))
    other = TokenStream(source, "valid", tok, key, 1)
    assert a.dir == b.dir != other.dir
    assert np.array_equal(a.window(0, 3000), b.window(0, 3000))
    assert not np.array_equal(a.window(0, 3000), other.window(0, 3000))


def test_parallel_pairs_from_local_files_and_the_hub_path(tmp_path):
    rows = [{"translation": {"en": f"Open file {i}", "de": f"Datei {i} öffnen"}} for i in range(5)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pair = {"src": "en", "dst": "de"}
    reg = registry(
        tmp_path,
        parallel={
            "local": {**local(f"{tmp_path}/p.jsonl", "test"), **pair},
            "hub": {**hub("json", [f"{tmp_path}/p.jsonl"], "test"), **pair},
            "syn": {"kind": "synthetic", **{"src": "syn_en", "dst": "syn_de"}},
        },
    )
    expected = [(r["translation"]["en"], r["translation"]["de"]) for r in rows]
    assert readers.pairs(reg.parallel["local"], "test") == expected
    assert readers.pairs(reg.parallel["hub"], "test", n_pairs=2) == expected[:2]
    from testbed.data.synthetic import parallel_pairs

    assert readers.pairs(reg.parallel["syn"], "valid", n_pairs=3) == parallel_pairs("syn_en", "syn_de", "valid", 3)


def test_tokenizer_and_validation_sets_follow_the_mixture():
    assert resolve_tokenizer("", {"syn_en": 0.5, "syn_fr": 0.5}) == "synthetic"
    assert resolve_tokenizer("", {"real_en": 1.0}) == "real"
    assert resolve_tokenizer("", {"c4": 1.0}) == "web_en"
    assert validation_sources([], "", {"syn_fr": 1.0}) == ["syn_fr", "syn_en", "syn_de", "syn_ro"]
    assert validation_sources([], "", {"real_de": 1.0}) == ["real_de", "real_en", "real_fr", "real_ro"]
    assert validation_sources(["syn_en", "real_en"], "", {"syn_fr": 1.0}) == ["syn_en", "real_en"]


def test_a_synthetic_source_s_world_knobs(tmp_path):
    """`world:` gives a synthetic source more people and another Zipf exponent of talk: its own documents
    and cache key, the default world's left exactly as it was; bad knobs are one-line errors."""
    reg = registry(
        tmp_path,
        sources={"plain": {"kind": "synthetic", "language": "syn_en"},
                 "tail": {"kind": "synthetic", "language": "syn_en", "world": {"persons": 30000, "zipf": 1.5}}},
    )  # fmt: skip
    plain, tail = reg.sources["plain"], reg.sources["tail"]
    assert readers.definition(plain, "valid", 0) == {"kind": "synthetic", "language": "syn_en", "split": "valid",
                                                     "seed": 0}  # fmt: skip
    assert readers.definition(tail, "valid", 0)["world"] == {"persons": 30000, "zipf": 1.5}
    first = lambda source: next(readers.documents(source, "valid", 0))  # noqa: E731
    assert first(plain) == readers.documents(known_sources()["syn_en"], "valid", 0).__next__() != first(tail)
    for knobs, message in (
        ({"persons": 100}, r"sources.bad.world.persons=100: a whole number of at least 3000$"),
        ({"zipf": 0}, r"sources.bad.world.zipf=0: an exponent in \(0, 10\]$"),
        ({"people": 5}, r"sources.bad.world.people=5: unknown world knob \(known: persons, zipf\)$"),
    ):
        with pytest.raises(TestbedError, match=message):
            registry(tmp_path, sources={"bad": {"kind": "synthetic", "language": "syn_en", "world": knobs}})
    with pytest.raises(TestbedError, match=r"sources.bad.world=.*a synthetic source's world knobs"):
        registry(tmp_path, sources={"bad": {**local(["x.txt"]), "world": {"zipf": 2}}})
