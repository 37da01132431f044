"""Documents and parallel pairs of a source's split, for every kind of source.

One path for all kinds: rows come from the synthetic generator, from local files (read directly, so a
bad file is named with its line), or from a Hugging Face dataset streamed with `datasets.load_dataset`
(which also reads local files when the source's `path` is a packaged builder such as `json`: that is how
the tests exercise the hub path offline). Rows then go through the same field extraction, empty-document
filter and skip/take. `definition` is what a cache entry is keyed on: the source's content, not its name.
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from testbed.data.sources import BLOCK_DOCS, KINDS, Source, SplitSpec, resolve_local
from testbed.errors import TestbedError

FORMAT_OF_SUFFIX = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def local_files(source: Source, split: str) -> list[Path]:
    """The files of a local split, globs expanded in sorted order; a missing one is an error."""
    spec = source.split_spec(split)
    files: list[Path] = []
    for pattern in spec.files:
        path = resolve_local(pattern)
        matched = sorted(Path(p) for p in glob.glob(str(path))) if glob.has_magic(str(path)) else [path]
        matched = [p for p in matched if p.is_file()]
        if not matched:
            hint = f" ({source.build} makes it)" if source.build else ""
            raise TestbedError(f"{source.where}.splits.{split}: {pattern!r}: no such file {path}{hint}")
        files += matched
    return files


@functools.cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


def definition(source: Source, split: str, world_seed: int) -> dict:
    """What a split's documents depend on: the key of its token cache (content, never the name)."""
    return KINDS.get(source.kind).definition(source, split, world_seed)


# --- rows -----------------------------------------------------------------------------------------


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TestbedError(
            f"{path}:{line}: not UTF-8 text (byte {raw[err.start : err.start + 1]!r} at column {err.start + 1})"
        ) from None


def _format(source: Source, path: Path) -> str:
    if source.format:
        return source.format
    suffix = Path(path.name.removesuffix(".gz")).suffix
    if suffix not in FORMAT_OF_SUFFIX:
        raise TestbedError(f"{source.where}: {path}: unknown file type {suffix!r}; set format: text | json | parquet")
    return FORMAT_OF_SUFFIX[suffix]


def _text_rows(path: Path, sample_by: str) -> Iterator[dict]:
    with _open_binary(path) as handle:
        if sample_by == "document":
            yield {"text": _decode(handle.read(), path, 1)}
            return
        paragraph: list[str] = []
        for number, raw in enumerate(handle, 1):
            line = _decode(raw, path, number).rstrip("\r\n")
            if sample_by == "line":
                yield {"text": line}
            elif line.strip():
                paragraph.append(line)
            elif paragraph:
                yield {"text": "\n".join(paragraph)}
                paragraph = []
        if paragraph:
            yield {"text": "\n".join(paragraph)}


def _json_rows(path: Path) -> Iterator[dict]:
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = _decode(raw, path, number)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TestbedError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            if not isinstance(row, dict):
                raise TestbedError(f"{path}:{number}: a JSON line must be an object, not {type(row).__name__}")
            yield row


def _parquet_rows(path: Path, field: str) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as err:
        raise TestbedError(f"{path}: not a parquet file ({str(err).splitlines()[0]})") from None
    if field not in table.schema_arrow.names:
        raise TestbedError(f"{path}: no column {field!r} (columns: {', '.join(table.schema_arrow.names)})")
    for batch in table.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            yield {field: value}


def _local_rows(source: Source, split: str) -> Iterator[tuple[dict, str]]:
    for path in local_files(source, split):
        fmt = _format(source, path)
        rows = (
            _text_rows(path, source.sample_by)
            if fmt == "text"
            else _json_rows(path)
            if fmt == "json"
            else _parquet_rows(path, source.text_field)
        )
        for row in rows:
            yield row, str(path)


def _hub_rows(source: Source, spec: SplitSpec) -> Iterator[tuple[dict, str]]:
    """A Hugging Face dataset split, streamed (nothing is downloaded ahead)."""
    import datasets

    where = f"{source.where}: path={source.path!r}"
    try:
        dataset = datasets.load_dataset(
            source.path,
            source.config,
            data_files=list(spec.files) or None,
            split=spec.split,
            streaming=True,
            revision=source.revision,
        )
        for row in dataset:
            yield row, where
    except TestbedError:
        raise
    except Exception as err:  # no network, no such dataset or split, a broken file
        message = str(err).splitlines()[0] if str(err) else ""
        raise TestbedError(f"{where} split={spec.split!r}: cannot read: {type(err).__name__}: {message}") from None


def _field(row: dict, field: str, origin: str):
    if field not in row:
        raise TestbedError(f"{origin}: no field {field!r} in a row (fields: {', '.join(map(str, row))})")
    return row[field]


# --- documents and pairs, by kind ----------------------------------------------------------------


def documents(source: Source, split: str, world_seed: int = 0, start: int = 0) -> Iterator[str]:
    """The documents of a split from document `start` on (empty ones dropped); synthetic ones never end."""
    return KINDS.get(source.kind).documents(source, split, world_seed, start)


def pairs(corpus: Source, split: str, n_pairs: int | None = None, world_seed: int = 0) -> list[tuple[str, str]]:
    """(source sentence, translation) pairs of a parallel corpus's split, in file order."""
    return KINDS.get(corpus.kind).pairs(corpus, split, n_pairs, world_seed)


def _window(items: Iterable, spec: SplitSpec, start: int) -> Iterator:
    stop = None if spec.take is None else spec.take
    if stop is not None and start >= stop:
        return iter(())
    return itertools.islice(items, spec.skip + start, None if stop is None else spec.skip + stop)


class SourceKind:
    """How one kind of source is read (the `kind:` of a data config entry; `sources.KINDS` names them).

    A kind yields a split's rows, each with where it came from (for messages), and says what they depend
    on (`content`); documents and pairs come from the rows through one field extraction, empty-document
    filter and skip/take. A kind that generates its documents (synthetic) overrides the methods below.
    """

    # whether a split is small enough to tokenize whole, to count a run's epochs over it (files on disk)
    finite = False

    def rows(self, source: Source, split: str) -> Iterator[tuple[dict, str]]:
        raise NotImplementedError

    def content(self, source: Source, split: str) -> dict:
        """What the rows depend on besides the fields, skip and take: file digests, a dataset and revision."""
        raise NotImplementedError

    def definition(self, source: Source, split: str, world_seed: int) -> dict:
        spec = source.split_spec(split)
        return {
            "kind": source.kind,
            "text_field": source.text_field,
            "pair": source.pair,
            "skip": spec.skip,
            "take": spec.take,
            **self.content(source, split),
        }

    def documents(self, source: Source, split: str, world_seed: int, start: int) -> Iterator[str]:
        def texts() -> Iterator[str]:
            for row, origin in self.rows(source, split):
                text = _field(row, source.text_field, origin)
                if not isinstance(text, str):
                    raise TestbedError(f"{origin}: field {source.text_field!r} holds {type(text).__name__}, not text")
                if text.strip():
                    yield text

        return _window(texts(), source.split_spec(split), start)

    def entropy(self, source: Source, split: str, world_seed: int, tokenizer, n_tokens: int) -> float | None:
        """Nats per token of the first `n_tokens` of the split's token stream under the process that wrote
        it, where that is known (a generator's): no model can score lower on that text. None: unknown."""
        return None

    def pairs(self, corpus: Source, split: str, n_pairs: int | None, world_seed: int) -> list[tuple[str, str]]:
        assert corpus.pair is not None, f"{corpus.where}: not a parallel corpus"
        src, dst = corpus.pair

        def rows() -> Iterator[tuple[str, str]]:
            for row, origin in self.rows(corpus, split):
                pair = _field(row, corpus.text_field, origin)
                if not isinstance(pair, dict) or src not in pair or dst not in pair:
                    raise TestbedError(f"{origin}: field {corpus.text_field!r} must map {src!r} and {dst!r} to text")
                if pair[src].strip() and pair[dst].strip():
                    yield pair[src], pair[dst]

        selected = _window(rows(), corpus.split_spec(split), 0)
        return list(selected if n_pairs is None else itertools.islice(selected, n_pairs))


class LocalKind(SourceKind):
    finite = True
    """txt / jsonl / parquet files (optionally gzipped) and globs, read directly."""

    def rows(self, source: Source, split: str) -> Iterator[tuple[dict, str]]:
        return _local_rows(source, split)

    def content(self, source: Source, split: str) -> dict:
        return {
            "format": source.format,
            "sample_by": source.sample_by,
            "files": [file_digest(p) for p in local_files(source, split)],
        }


class HubKind(SourceKind):
    """A Hugging Face dataset split, streamed."""

    def rows(self, source: Source, split: str) -> Iterator[tuple[dict, str]]:
        return _hub_rows(source, source.split_spec(split))

    def content(self, source: Source, split: str) -> dict:
        spec = source.split_spec(split)
        return {
            "path": source.path,
            "config": source.config,
            "revision": source.revision,
            "split": spec.split,
            "files": list(spec.files),
        }


class SyntheticKind(SourceKind):
    """The built-in world's languages: documents generated on demand, unbounded."""

    def definition(self, source: Source, split: str, world_seed: int) -> dict:
        knobs = {"world": dict(source.world)} if source.world else {}  # the default world keeps its old keys
        return {"kind": "synthetic", "language": source.language, "split": split, "seed": world_seed, **knobs}

    def documents(self, source: Source, split: str, world_seed: int, start: int) -> Iterator[str]:
        from testbed.data import synthetic

        for first in itertools.count(start, BLOCK_DOCS):  # document i depends on (language, split, seed, i) only
            yield from synthetic.documents(
                source.language, split, BLOCK_DOCS, seed=world_seed, start=first, world=source.world
            )

    def entropy(self, source: Source, split: str, world_seed: int, tokenizer, n_tokens: int) -> float:
        from testbed.data import synthetic

        def count_tokens(texts: list[str]) -> list[int]:  # as the shards tokenize (shards.py)
            return [len(ids) for ids in tokenizer(texts, split_special_tokens=True)["input_ids"]]

        return synthetic.entropy(
            source.language, split, count_tokens, n_tokens, seed=world_seed, world=source.world
        ).per_token

    def pairs(self, corpus: Source, split: str, n_pairs: int | None, world_seed: int) -> list[tuple[str, str]]:
        from testbed.data import synthetic

        assert corpus.pair is not None, f"{corpus.where}: not a parallel corpus"
        src, dst = corpus.pair
        spec = corpus.split_spec(split)
        wanted = 2000 if n_pairs is None else n_pairs  # synthetic corpora are unbounded: default size
        return synthetic.parallel_pairs(src, dst, split, spec.skip + wanted, seed=world_seed)[spec.skip :]


SYNTHETIC, LOCAL, HUB = SyntheticKind(), LocalKind(), HubKind()  # registered in sources.KINDS
