"""The registry of data sources and named mixtures, declared in configs/data/*.yaml.

A source yields documents for a split in fixed-size blocks, so a stream can grow on demand and
every block is cached once and shared by all runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from omegaconf import OmegaConf

from testbed.config import CONFIG_ROOT
from testbed.errors import TestbedError

BLOCK_DOCS = 1000  # documents per cached block


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # synthetic (later: local, hub)
    language: str


@functools.cache
def _registry() -> tuple[dict[str, Source], dict[str, dict[str, float]]]:
    sources: dict[str, Source] = {}
    mixtures: dict[str, dict[str, float]] = {}
    for path in sorted((CONFIG_ROOT / "data").glob("*.yaml")):
        spec = OmegaConf.to_container(OmegaConf.load(path))
        for name, entry in (spec.get("sources") or {}).items():
            if entry.get("kind") != "synthetic":
                raise TestbedError(f"{path}: sources.{name}.kind={entry.get('kind')!r}: known kinds: synthetic")
            sources[name] = Source(name=name, kind=entry["kind"], language=entry["language"])
        mixtures.update(spec.get("mixtures") or {})
    return sources, mixtures


def known_sources() -> dict[str, Source]:
    return _registry()[0]


def mixture(name: str, where: str = "config") -> dict[str, float]:
    """The weights of a named mixture (a training dataset of a sweep)."""
    mixtures = _registry()[1]
    if name not in mixtures:
        raise TestbedError(f"{where}: dataset={name!r}: unknown mixture (known: {', '.join(mixtures)})")
    return dict(mixtures[name])


def block_documents(source: Source, split: str, block: int, world_seed: int) -> list[str]:
    """Documents [block * BLOCK_DOCS, (block + 1) * BLOCK_DOCS) of a source's split."""
    from testbed.data import synthetic

    return synthetic.documents(source.language, split, BLOCK_DOCS, seed=world_seed, start=block * BLOCK_DOCS)
