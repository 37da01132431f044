"""Bad input: each gives one line naming the file, key or value; no cache entry is left half-written."""

import json
import shutil

import pytest

from testbed.cli import main
from testbed.data import real
from testbed.data.sources import load_registry
from testbed.data.stream import CorpusTooSmall, MixtureBatcher, TokenStream
from testbed.data.tokenizer import load_tokenizer, tokenizer_key
from testbed.errors import TestbedError
from testbed.io import atomic_dir, atomic_write


def source(tmp_path, files, name="src", **keys):
    path = tmp_path / "data.yaml"
    path.write_text(
        json.dumps({"sources": {name: {"kind": "local", "language": "xx", "splits": {"train": files}, **keys}}})
    )
    return load_registry([path]).sources[name]


def registry_error(tmp_path, spec) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(spec))
    with pytest.raises(TestbedError) as err:
        load_registry([path])
    return str(err.value)


def stream(src):
    return TokenStream(src, "train", load_tokenizer(512, 0), tokenizer_key(512, 0), 0)


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_file(tmp_path):
    src = source(tmp_path, "no/such.jsonl", build="make real-data")
    with pytest.raises(TestbedError) as err:
        stream(src)
    assert "sources.src.splits.train: 'no/such.jsonl': no such file" in one_line(err)
    assert "make real-data" in str(err.value)


def test_empty_source(tmp_path):
    (tmp_path / "empty.jsonl").write_text('{"text": "   "}\n\n')
    with pytest.raises(TestbedError) as err:
        stream(source(tmp_path, str(tmp_path / "empty.jsonl"))).ensure(10)
    assert "sources.src: the train split has no documents" in one_line(err) and "empty.jsonl" in str(err.value)


def test_non_utf8_bytes_and_no_half_written_cache_entry(tmp_path):
    lines = [f"document number {i}\n".encode() for i in range(1500)] + [b"caf\xe9 au lait\n"]
    (tmp_path / "latin1.txt").write_bytes(b"".join(lines))
    s = stream(source(tmp_path, str(tmp_path / "latin1.txt")))
    with pytest.raises(TestbedError) as err:
        s.ensure(10**7)
    assert f"{tmp_path / 'latin1.txt'}:1501: not UTF-8 text (byte b'\\xe9' at column 4)" == one_line(err)
    # the first shard was complete and stays; the failed one left nothing behind, not even a temp file
    assert sorted(p.name for p in s.dir.iterdir()) == ["00000.npy", "index.json"]
    assert json.loads((s.dir / "index.json").read_text())["complete"] is False


def test_a_failed_write_leaves_no_file(tmp_path):
    def crash(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "00000.npy", crash, binary=True)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_entry_built_by_two_processes_at_once_keeps_the_first(tmp_path, monkeypatch):
    """Two sweep workers building the same tokenizer on a fresh cache: the one that renames second finds
    the other's directory in place (ENOTEMPTY) and keeps it instead of failing its run."""
    target = tmp_path / "tokenizers" / "key"
    rename = type(target).rename

    def other_process_lands_first(self, dest):
        if dest == target and not target.exists():
            target.mkdir(parents=True)
            (target / "vocab.json").write_text("theirs")
        return rename(self, dest)

    monkeypatch.setattr(type(target), "rename", other_process_lands_first)
    kept = atomic_dir(target, lambda staging: (staging / "vocab.json").write_text("mine"), replace=False)
    assert kept and (target / "vocab.json").read_text() == "theirs"
    assert [p.name for p in target.parent.iterdir()] == ["key"]  # no staging left behind
    shutil.rmtree(target)
    with pytest.raises(OSError):  # a replacing writer does not silently lose its build
        atomic_dir(target, lambda staging: (staging / "vocab.json").write_text("mine"))


def test_bad_json_and_missing_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "fine text"}\n{"text": oops}\n')
    with pytest.raises(TestbedError) as err:
        stream(source(tmp_path, str(tmp_path / "a.jsonl"))).ensure(10)
    assert f"{tmp_path / 'a.jsonl'}:2: not a JSON line" in one_line(err)
    (tmp_path / "b.jsonl").write_text('{"body": "fine text"}\n')
    with pytest.raises(TestbedError) as err:
        stream(source(tmp_path, str(tmp_path / "b.jsonl"))).ensure(10)
    assert "no field 'text' in a row (fields: body)" in one_line(err)


def test_corpus_smaller_than_the_budget_says_how_many_epochs(tmp_path):
    (tmp_path / "small.txt").write_text("".join(f"a short line of text {i}\n" for i in range(50)))
    s = stream(source(tmp_path, str(tmp_path / "small.txt")))
    batcher = MixtureBatcher({"src": s}, {"src": 1.0}, seq_len=32, batch_size=4, total_tokens=20_000)
    with pytest.raises(CorpusTooSmall) as err:
        batcher.prefetch()
    message = one_line(err)
    available = len(s)
    assert message.startswith("data.mixture.src=1 of a 20,000-token budget: ")
    assert (
        f"holds {available:,} tokens (50 documents) but 20,001 are needed: {20_001 / available:.2f} epochs" in message
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"sources": {"a": {"kind": "ftp", "language": "en"}}},
            "sources.a.kind: unknown source kind 'ftp'; known source kinds: synthetic, local, hub",
        ),
        (
            {"sources": {"a": {"kind": "synthetic", "language": "syn_xx"}}},
            "sources.a.language='syn_xx': unknown synthetic language",
        ),
        (
            {"sources": {"a": {"kind": "synthetic", "language": "syn_en"}}, "mixtures": {"m": {"a": 0.5, "b": 0.5}}},
            "mixtures.m.b=0.5: unknown source (known: a)",
        ),
        (
            {"sources": {"a": {"kind": "synthetic", "language": "syn_en"}}, "mixtures": {"m": {"a": 0.7}}},
            "mixtures.m={'a': 0.7}: weights sum to 0.7, not 1",
        ),
        (
            {"sources": {"a": {"kind": "local", "language": "en", "splits": {"dev": "x.txt"}}}},
            "sources.a.splits.dev='x.txt': known splits: train, valid, test",
        ),
        (
            {"sources": {"a": {"kind": "hub", "language": "en", "splits": {"train": "train"}}}},
            "sources.a.path=None: a hub source names its dataset",
        ),
    ],
)
def test_bad_registry_entries(tmp_path, spec, expected):
    message = registry_error(tmp_path, spec)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'bad.yaml'}: ")
    assert expected in message


def test_unknown_split_and_language(tmp_path):
    src = source(tmp_path, "x.txt")
    with pytest.raises(TestbedError, match=r"sources.src.splits: no 'valid' split \(declared: train\)"):
        TokenStream(src, "valid", load_tokenizer(512, 0), tokenizer_key(512, 0), 0)
    with pytest.raises(TestbedError, match="'xx': the builder knows en, de, fr, ro"):
        real.build(tmp_path / "out", roots=[tmp_path], languages=("en", "xx"))


def test_hub_errors_are_one_line(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(
        json.dumps(
            {
                "sources": {
                    "h": {
                        "kind": "hub",
                        "language": "en",
                        "path": "json",
                        "splits": {"train": {"files": [str(tmp_path / "none.jsonl")]}},
                    }
                }
            }
        )
    )
    with pytest.raises(TestbedError) as err:
        stream(load_registry([path]).sources["h"]).ensure(10)
    assert "sources.h: path='json' split='train': cannot read: FileNotFoundError" in one_line(err)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.mixture={syn_en: 0.7, syn_fr: 0.2}", "data.mixture={'syn_en': 0.7, 'syn_fr': 0.2}: weights sum to 0.9"),
        ("data.mixture={syn_xx: 1.0}", "data.mixture.syn_xx=1.0: unknown source"),
        ("data.validation=[nope]", "data.validation='nope': unknown source"),
        ("data.tokenizer=nope", "data.tokenizer='nope': unknown tokenizer corpus"),
    ],
)
def test_the_command_line_exits_2_with_one_line(capsys, override, expected, tmp_path):
    assert main(["train", override, f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "adhoc").exists()  # nothing was written
