"""A run's config resolved against the registries: the one step above config, data sources and ladder.

`testbed.config` checks each field on its own; here a run is completed (its mixture's weights from the
data registry) and checked against what the registries hold (its architecture, ladder and rung, its
sources, its tokenizer corpus). Every problem is one line naming the file, the key and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from testbed.arch import arch_names, get_arch
from testbed.config import RunConfig
from testbed.config_layers import config_error, load_schema, parse_overrides, read_yaml
from testbed.data.sources import known_sources, mixture, tokenizer_corpus
from testbed.ladder import load_ladder


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config from a YAML file (or the defaults), with `key=value` overrides, resolved and checked."""
    layers = [] if path is None else [read_yaml(Path(path))]
    source = " + ".join([str(path or "defaults")] + (["command line"] if overrides else []))
    if overrides:
        layers.append(parse_overrides("command line", overrides))
    return resolve_run(load_schema(RunConfig, source, layers), source)


def resolve_run(config: RunConfig, source: str) -> RunConfig:
    """Fill in the mixture registered under `data.name` (when none is given) and check the run against
    the registries; returns the same config."""
    if not config.data.mixture:
        config.data.mixture = mixture(config.data.name, f"{source}: data.name")
    validate_run(config, source)
    return config


def validate_run(config: RunConfig, source: str) -> None:
    """Check a run against the registries: its architecture and options, its ladder and rung, its data
    sources and tokenizer corpus. (Each field's own checks ran in the schemas' __post_init__ when the config
    was built.)"""
    data, model = config.data, config.model
    if model.arch not in arch_names():
        raise config_error(source, "model.arch", model.arch, f"known architectures: {', '.join(arch_names())}")
    if model.qk_norm and not get_arch(model.arch).qk_norm:
        supporting = [name for name in arch_names() if get_arch(name).qk_norm]
        raise config_error(source, "model.qk_norm", model.qk_norm, f"qk-norm is a {' / '.join(supporting)} option")
    ladder = load_ladder(model.ladder, source)
    rungs = ladder.rungs(model.arch)
    if model.size not in rungs:
        raise config_error(
            source,
            "model.size",
            model.size,
            f"not a {model.arch} size of ladder {model.ladder!r} ({', '.join(rungs) or 'none'})",
        )
    if not data.mixture:
        raise config_error(source, "data.mixture", {}, "a mixture needs at least one source")
    sources = known_sources()
    for name, weight in data.mixture.items():
        if name not in sources:
            raise config_error(source, f"data.mixture.{name}", weight, f"unknown source (known: {', '.join(sources)})")
    total = sum(data.mixture.values())
    if abs(total - 1.0) > 1e-6:
        raise config_error(source, "data.mixture", dict(data.mixture), f"weights sum to {total:g}, not 1")
    for name in data.validation:
        if name not in sources:
            raise config_error(source, "data.validation", name, f"unknown source (known: {', '.join(sources)})")
    if data.tokenizer:
        tokenizer_corpus(data.tokenizer, source)
