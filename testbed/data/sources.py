"""The registry of data, declared in configs/data/*.yaml: sources, mixtures, parallel corpora, tokenizers.

    sources:      named document streams with a train/valid/test split each, of one of three kinds:
                  synthetic (the built-in world), local (txt / jsonl / parquet files and globs) and hub
                  (a Hugging Face dataset, streamed); see readers.py
    mixtures:     named training datasets: source -> weight, weights summing to 1
    parallel:     named translation corpora (src, dst): synthetic, local or hub, read by the same code
    tokenizers:   named tokenizer corpora: the sources a shared BPE is learned from

Every entry is checked when the registry is read; an error names the file, the key and the value.
Files are looked up only when a stream is read, so sources whose files are not built yet can be declared.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from analysis.registry import Registry
from testbed.errors import TestbedError
from testbed.paths import REPO_ROOT, config_files

# How each kind of source is read: a readers.SourceKind (imported when first read). A new kind is one
# `KINDS.register("name", MyKind())` call; entries then check only the keys common to all kinds.
KINDS: Registry = Registry("source kind", error=TestbedError)
KINDS.register("synthetic", "testbed.data.readers:SYNTHETIC")
KINDS.register("local", "testbed.data.readers:LOCAL")
KINDS.register("hub", "testbed.data.readers:HUB")
SPLITS = ("train", "valid", "test")
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # default hub split names
LOCAL_FORMATS = ("text", "json", "parquet")
DEFAULT_TOKENIZER = "synthetic"
BLOCK_DOCS = 1000  # documents per token shard (and per synthetic generation call)


@dataclass(frozen=True)
class SplitSpec:
    """Where one split's documents come from."""

    files: tuple[str, ...] = ()  # local: paths or globs; hub: data_files patterns inside the dataset repo
    split: str = "train"  # hub: the dataset's split name
    skip: int = 0  # documents skipped first (e.g. a validation split carved off the front of train)
    take: int | None = None  # then at most this many documents


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # synthetic | local | hub: a name in KINDS
    language: str
    where: str = ""  # "configs/data/real.yaml: sources.real_en": the prefix of error messages
    splits: Mapping[str, SplitSpec] = field(default_factory=dict)  # empty for synthetic (all splits)
    text_field: str = "text"
    format: str | None = None  # local: text | json | parquet; None: from the file extension
    sample_by: str = "line"  # local text files: one document per line | paragraph | document (file)
    path: str | None = None  # hub: dataset id ("allenai/c4"), or a packaged builder ("json")
    config: str | None = None  # hub: dataset config name ("en")
    revision: str | None = None  # hub: a pinned commit, part of the cache key
    build: str | None = None  # how to make missing local files (shown in the error)
    pair: tuple[str, str] | None = None  # parallel corpora: (src, dst) keys of `text_field`
    world: Mapping[str, float] = field(default_factory=dict)  # synthetic: knobs of its world (persons, zipf)

    def split_spec(self, split: str) -> SplitSpec:
        if split not in SPLITS:
            raise TestbedError(f"{self.where}: split={split!r}: known splits: {', '.join(SPLITS)}")
        if self.kind == "synthetic":
            return SplitSpec(split=split)
        if split not in self.splits:
            raise TestbedError(f"{self.where}.splits: no {split!r} split (declared: {', '.join(self.splits)})")
        return self.splits[split]


@dataclass(frozen=True)
class TokenizerCorpus:
    name: str
    sources: tuple[str, ...]
    docs_per_source: int = 1000  # documents of each source's train split the merges are learned from


@dataclass
class DataRegistry:
    sources: dict[str, Source] = field(default_factory=dict)
    mixtures: dict[str, dict[str, float]] = field(default_factory=dict)
    parallel: dict[str, Source] = field(default_factory=dict)
    tokenizers: dict[str, TokenizerCorpus] = field(default_factory=dict)


def _fail(where: str, value: object, why: str) -> TestbedError:
    return TestbedError(f"{where}={value!r}: {why}")


def _split_spec(kind: str, where: str, split: str, raw: object) -> SplitSpec:
    if isinstance(raw, str | list):  # shorthand: local files, or a hub split name
        raw = {"files": raw} if kind == "local" else {"split": raw}
    if not isinstance(raw, Mapping):
        raise _fail(where, raw, "a split is a file, a list of files, or {files, split, skip, take}")
    unknown = set(raw) - {"files", "split", "skip", "take"}
    if unknown:
        raise _fail(f"{where}.{sorted(unknown)[0]}", raw[sorted(unknown)[0]], "known keys: files, split, skip, take")
    files = raw.get("files") or ()
    files = (files,) if isinstance(files, str) else tuple(str(f) for f in files)
    if kind == "local" and not files:
        raise _fail(f"{where}.files", list(files), "a local split needs at least one file or glob")
    skip, take = raw.get("skip", 0), raw.get("take")
    if not isinstance(skip, int) or skip < 0 or (take is not None and (not isinstance(take, int) or take <= 0)):
        raise _fail(where, dict(raw), "skip must be >= 0 and take > 0")
    return SplitSpec(files=files, split=str(raw.get("split", HUB_SPLITS[split])), skip=skip, take=take)


SOURCE_KEYS = {"kind", "language", "splits", "text_field", "format", "sample_by", "path", "config", "revision",
               "build", "src", "dst", "world"}  # fmt: skip


def _languages(entry: Mapping, where: str, parallel: bool) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
    """(the (src, dst) pair of a parallel corpus or None, the languages the entry declares)."""
    if parallel:
        if not entry.get("src") or not entry.get("dst"):
            raise _fail(where, dict(entry), "a parallel corpus needs src and dst languages")
        pair = (str(entry["src"]), str(entry["dst"]))
        return pair, pair
    if not entry.get("language"):
        raise _fail(f"{where}.language", entry.get("language"), "every source names its language")
    return None, (str(entry["language"]),)


def _splits(kind: str, raw_splits: Mapping, where: str) -> dict[str, SplitSpec]:
    if kind != "synthetic" and not raw_splits:
        raise _fail(f"{where}.splits", raw_splits, "declare at least the train split")
    splits = {}
    for split, raw in raw_splits.items():
        if split not in SPLITS:
            raise _fail(f"{where}.splits.{split}", raw, f"known splits: {', '.join(SPLITS)}")
        splits[split] = _split_spec(kind, f"{where}.splits.{split}", split, raw)
    return splits


def parse_source(name: str, entry: object, where: str, parallel: bool = False) -> Source:
    """One `sources.<name>` (or `parallel.<name>`) entry of a data config, checked."""
    if not isinstance(entry, Mapping):
        raise _fail(where, entry, "a source is a mapping with at least `kind`")
    kind = entry.get("kind")
    if kind not in KINDS:
        try:
            KINDS.get(kind)
        except TestbedError as err:  # "unknown source kind 'lcoal' (did you mean 'local'?); known source kinds: ..."
            raise TestbedError(f"{where}.kind: {err}") from None
    assert isinstance(kind, str)  # KINDS has it, and names are strings
    unknown = set(entry) - SOURCE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise _fail(f"{where}.{key}", entry[key], f"unknown key (known: {', '.join(sorted(SOURCE_KEYS))})")
    pair, languages = _languages(entry, where, parallel)
    if kind == "synthetic":
        from testbed.data.synthetic import LANGUAGES

        for language in languages:
            if language not in LANGUAGES:
                raise _fail(f"{where}.language", language, f"unknown synthetic language ({', '.join(LANGUAGES)})")
    world = entry.get("world") or {}
    if world:
        from testbed.data.synthetic_world import SyntheticError, check_knobs

        if kind != "synthetic" or not isinstance(world, Mapping):
            raise _fail(f"{where}.world", world, "a synthetic source's world knobs: {persons: N, zipf: s}")
        try:
            world = check_knobs(world)
        except SyntheticError as err:
            raise TestbedError(f"{where}.world.{err}") from None
    if kind == "hub" and not entry.get("path"):
        raise _fail(f"{where}.path", entry.get("path"), "a hub source names its dataset (e.g. allenai/c4)")
    splits = _splits(kind, entry.get("splits") or {}, where)
    fmt = entry.get("format")
    if fmt is not None and fmt not in LOCAL_FORMATS:
        raise _fail(f"{where}.format", fmt, f"known formats: {', '.join(LOCAL_FORMATS)}")
    sample_by = entry.get("sample_by", "line")
    if sample_by not in ("line", "paragraph", "document"):
        raise _fail(f"{where}.sample_by", sample_by, "one of line, paragraph, document")
    return Source(
        name=name,
        kind=kind,
        language=languages[-1] if not parallel else "-".join(languages),
        where=where,
        splits=splits,
        text_field=str(entry.get("text_field", "translation" if parallel else "text")),
        format=fmt,
        sample_by=sample_by,
        path=entry.get("path"),
        config=entry.get("config"),
        revision=entry.get("revision"),
        build=entry.get("build"),
        pair=pair,
        world=world,
    )


def check_weights(weights: object, where: str, sources: Mapping[str, Source]) -> dict[str, float]:
    """A mixture's weights: known sources, non-negative numbers summing to 1."""
    if not isinstance(weights, Mapping) or not weights:
        raise _fail(where, weights, "a mixture maps source names to weights")
    for name, weight in weights.items():
        if name not in sources:
            raise _fail(f"{where}.{name}", weight, f"unknown source (known: {', '.join(sources)})")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise _fail(f"{where}.{name}", weight, "weights are non-negative numbers")
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise _fail(where, dict(weights), f"weights sum to {total:g}, not 1")
    return {name: float(w) for name, w in weights.items()}


def load_registry(paths: list[Path]) -> DataRegistry:
    """Read and check data configs; a name may be declared once across all files."""
    registry = DataRegistry()
    pending_mixtures, pending_tokenizers = [], []
    for real_path in paths:
        path = _shown(Path(real_path))  # for messages; the file is read where it is, whatever the cwd
        try:
            spec = OmegaConf.to_container(OmegaConf.load(real_path), resolve=True) or {}
        except Exception as err:
            raise TestbedError(f"{path}: not a valid data config: {str(err).splitlines()[0]}") from None
        if not isinstance(spec, dict):
            raise TestbedError(f"{path}: not a valid data config: the top level is not a mapping of sections")
        unknown = set(spec) - {"sources", "mixtures", "parallel", "tokenizers"}
        if unknown:
            raise TestbedError(
                f"{path}: {sorted(unknown)[0]}: unknown section (sources, mixtures, parallel, tokenizers)"
            )
        for section, table in (("sources", registry.sources), ("parallel", registry.parallel)):
            for name, entry in (spec.get(section) or {}).items():
                where = f"{path}: {section}.{name}"
                if name in table:
                    raise TestbedError(f"{where}: declared twice (also {table[name].where})")
                table[name] = parse_source(name, entry, where, parallel=section == "parallel")
        pending_mixtures += [(f"{path}: mixtures.{n}", n, w) for n, w in (spec.get("mixtures") or {}).items()]
        pending_tokenizers += [(f"{path}: tokenizers.{n}", n, t) for n, t in (spec.get("tokenizers") or {}).items()]
    for where, name, weights in pending_mixtures:  # after all files: a mixture may use any file's sources
        if name in registry.mixtures:
            raise TestbedError(f"{where}: declared twice")
        registry.mixtures[name] = check_weights(weights, where, registry.sources)
    for where, name, entry in pending_tokenizers:
        entry = {"sources": entry} if isinstance(entry, list) else entry
        if not isinstance(entry, Mapping) or not entry.get("sources"):
            raise _fail(where, entry, "a tokenizer corpus lists its sources")
        for source in entry["sources"]:
            if source not in registry.sources:
                raise _fail(f"{where}.sources", source, f"unknown source (known: {', '.join(registry.sources)})")
        registry.tokenizers[name] = TokenizerCorpus(
            name, tuple(entry["sources"]), int(entry.get("docs_per_source", 1000))
        )
    return registry


@functools.cache
def registry() -> DataRegistry:
    return load_registry(config_files("data"))


def known_sources() -> dict[str, Source]:
    return registry().sources


def known_parallel() -> dict[str, Source]:
    return registry().parallel


def mixture(name: str, where: str = "config") -> dict[str, float]:
    """The weights of a named mixture (a training dataset of a sweep)."""
    mixtures = registry().mixtures
    if name not in mixtures:
        raise TestbedError(f"{where}: dataset={name!r}: unknown mixture (known: {', '.join(mixtures)})")
    return dict(mixtures[name])


def tokenizer_corpus(name: str, where: str = "config") -> TokenizerCorpus:
    tokenizers = registry().tokenizers
    if name not in tokenizers:
        raise TestbedError(
            f"{where}: data.tokenizer={name!r}: unknown tokenizer corpus (known: {', '.join(tokenizers)})"
        )
    return tokenizers[name]


def resolve_tokenizer(tokenizer: str, mixture_weights: Mapping[str, float]) -> str:
    """The named tokenizer corpus of a run: as configured, or the first one covering the mixture."""
    if tokenizer:
        return tokenizer_corpus(tokenizer).name
    for corpus in registry().tokenizers.values():
        if set(mixture_weights) <= set(corpus.sources):
            return corpus.name
    return DEFAULT_TOKENIZER


def validation_sources(validation: list[str], tokenizer: str, mixture_weights: Mapping[str, float]) -> list[str]:
    """The sources a run validates on: as configured, or its mixture's and its tokenizer corpus's sources."""
    if validation:
        return list(validation)
    corpus = tokenizer_corpus(resolve_tokenizer(tokenizer, mixture_weights))
    return list(dict.fromkeys([*mixture_weights, *corpus.sources]))


def run_sources(validation: list[str], tokenizer: str, mixture_weights: Mapping[str, float]) -> list[str]:
    """Every source a run's tokens come from: its mixture, its validation sets and its tokenizer's corpus."""
    corpus = tokenizer_corpus(resolve_tokenizer(tokenizer, mixture_weights))
    return list(dict.fromkeys([*mixture_weights, *validation, *corpus.sources]))


def _shown(path: Path) -> Path:
    """A config path as error messages show it: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return path


def resolve_local(pattern: str) -> Path:
    path = Path(pattern).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def corpus_fingerprints(names: Iterable[str]) -> dict[str, str]:
    """The build fingerprint of each named local source whose files sit under a manifest.json (the builders
    of `make real-data` write one, with the fingerprint of their inputs): what a run records in meta.json, so
    that a corpus rebuilt since is noticed (RunDir.change). Other sources, and corpora not built, are left out."""
    sources, out = known_sources(), {}
    for name in dict.fromkeys(names):
        source = sources.get(name)
        if source is None or source.kind != "local":
            continue
        files = [f for spec in source.splits.values() for f in spec.files]
        stamps = {s for f in files if (s := _manifest_fingerprint(resolve_local(f).parent))}
        if stamps:
            out[name] = "+".join(sorted(stamps))
    return out


def _manifest_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the nearest manifest.json at or above `folder`, inside the repository."""
    for where in (folder, *folder.parents):
        manifest = where / "manifest.json"
        if manifest.is_file():
            try:
                stamp = json.loads(manifest.read_text()).get("fingerprint")
            except (OSError, ValueError):
                return None
            return str(stamp) if stamp else None
        if where == REPO_ROOT:
            break
    return None
