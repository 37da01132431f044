"""Structured configs from YAML and `key=value` layers (OmegaConf), with one-line errors: the machinery under
testbed.config's schemas and the ladder's. A leaf: it imports only errors.

A schema checks its own fields in `__post_init__` with the `check_*` helpers below, which raise
ConfigValueError; `load_schema` runs the checks on every merge and turns a failure into one line naming the
source, the full dotted key and the value.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from testbed.errors import TestbedError

T = TypeVar("T")  # a structured config schema
# A name that becomes a file or directory name (sweep, ladder, mixture, suite, task): no separators, no `..`.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class ConfigValueError(ValueError):
    """A schema's own check failed: the key (relative to the schema that raised it), the value and why."""

    def __init__(self, key: str, value: object, why: str):
        super().__init__(f"{key}={value!r}: {why}")
        self.key, self.value, self.why = key, value, why


def check_number(
    key: str,
    value: float | None,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> None:
    """`value` (None: unset, always fine) is finite and within the interval; the message states the interval."""
    if value is None:
        return
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if math.isfinite(value) and above and below:
        return
    integer = isinstance(value, int)
    kind, bound = ("integer", str) if integer else ("number", "{:g}".format)
    if high == math.inf:
        rule = (
            f"a {'' if integer else 'finite '}{'positive' if low_open else 'non-negative'} {kind}"
            if low == 0
            else f"{'above' if low_open else 'at least'} {bound(low)}"
        )
    elif low == 0 and low_open and not high_open:
        rule = f"a positive {kind} at most {bound(high)}"
    else:
        interval = f"{'(' if low_open else '['}{bound(low)}, {bound(high)}{')' if high_open else ']'}"
        rule = f"{'an' if integer else 'a'} {kind} within {interval}"
    raise ConfigValueError(key, value, f"must be {rule}{note}")


def check_name(key: str, value: str | None) -> None:
    """`value` (None: unset, always fine) can be a file or directory name: no path separators, no `..`."""
    if value is not None and not (NAME.fullmatch(value) and ".." not in value):
        raise ConfigValueError(
            key,
            value,
            "must be a name: a letter or digit, then letters, digits and _ . + -, "
            "without '..' (it names a file or directory)",
        )


def check_choice(key: str, value: str, known: tuple[str, ...], what: str = "") -> None:
    if value not in known:
        raise ConfigValueError(key, value, f"known{what}: {', '.join(known)}")


def config_error(source: str, key: str, value: object, why: str) -> TestbedError:
    where = key if value is None else f"{key}={value!r}"
    return TestbedError(f"{source}: {where}: {why}")


def load_schema(schema: type[T], source: str, layers: list, prefix: str = "") -> T:
    """Merge YAML/dict/dotlist layers onto a structured schema and build it (running each schema's checks);
    OmegaConf errors and failed checks become one line with the full dotted key (after `prefix`, if given)."""
    merged = OmegaConf.structured(schema)
    try:
        for layer in layers:
            merged = OmegaConf.merge(merged, layer)
        built = OmegaConf.to_object(merged)
        assert isinstance(built, schema)  # a structured config builds its schema
        return built
    except OmegaConfBaseException as err:
        value = getattr(err, "value", None)
        message = str(err).splitlines()[0]
        raise config_error(source, prefix + (err.full_key or "?"), value, message) from None
    except TypeError as err:  # OmegaConf.merge of a mapping onto a list: `grid.0.seeds=[1]`
        raise TestbedError(f"{source}: {err}: a list is replaced whole (grid=[...]), not by index") from None
    except ConfigValueError as err:
        node = _failing_node(merged)
        raise config_error(source, prefix + (f"{node}.{err.key}" if node else err.key), err.value, err.why) from None


def _failing_node(node: DictConfig | ListConfig, path: str = "") -> str:
    """The dotted path (`train`, `grid[1]`) of the innermost structured node under `node` whose checks fail."""
    for key, child in enumerate(node) if isinstance(node, ListConfig) else node.items():
        if isinstance(child, DictConfig | ListConfig):
            name = str(key)  # an index, or a key of a structured node (a str)
            where = f"{path}[{name}]" if isinstance(node, ListConfig) else f"{path}.{name}" if path else name
            try:
                OmegaConf.to_object(child)
            except ConfigValueError:
                return _failing_node(child, where)
    return path


def read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise TestbedError(f"{path}: no such config file")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml parser errors carry multi-line context
        raise TestbedError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, DictConfig):
        raise TestbedError(f"{path}: the top level is a list, not a mapping of keys (key: value)")
    return loaded


def parse_overrides(source: str, overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise config_error(source, item, None, "an override must read key=value")
    return OmegaConf.from_dotlist(list(overrides))


def with_values(config: T, values: dict[str, Any], source: str, prefix: str = "") -> T:
    """A copy of the schema object `config` with dotted keys set to values, merged as a command-line dotlist is:
    an unknown key or a bad value is one line naming `source`, `prefix` + the key, and the value."""
    layer = OmegaConf.create()
    for key, value in values.items():
        try:
            current = config_value(config, key)
        except KeyError:
            keys = _value_keys(config)
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise config_error(source, prefix + key, value, f"not a key of the run config{hint}") from None
        if hasattr(current, "__dataclass_fields__"):
            raise config_error(source, prefix + key, value, "a section of the run config; name a key under it")
        OmegaConf.update(layer, key, value, merge=True)
    return load_schema(type(config), source, [OmegaConf.structured(config), layer], prefix)


def _value_keys(config: object, path: str = "") -> list[str]:
    """Every dotted key of a schema object that holds a value (not a section)."""
    keys = []
    for name in getattr(config, "__dataclass_fields__", {}):
        value, key = getattr(config, name), f"{path}{name}"
        keys += _value_keys(value, f"{key}.") if hasattr(value, "__dataclass_fields__") else [key]
    return keys


def config_value(config: object, key: str) -> Any:
    """The value under a dotted key (`train.lr`) of a schema object; KeyError if there is none."""
    value = config
    for part in key.split("."):
        if not hasattr(value, "__dataclass_fields__") or part not in value.__dataclass_fields__:
            raise KeyError(key)
        value = getattr(value, part)
    return value


def first_difference(a: object, b: object, ignore: frozenset[str] = frozenset()) -> tuple[str, Any, Any] | None:
    """The first dotted key (in schema order, none of `ignore`) where two schema objects differ, with its value
    in each (MISSING where one lacks the key: a mixture's source), or None when they are equal."""
    flat_a = _flatten(OmegaConf.to_container(OmegaConf.structured(a)))
    flat_b = _flatten(OmegaConf.to_container(OmegaConf.structured(b)))
    for key in (k for k in dict.fromkeys([*flat_a, *flat_b]) if k not in ignore):
        value_a, value_b = flat_a.get(key, MISSING), flat_b.get(key, MISSING)
        if value_a != value_b:
            return key, value_a, value_b
    return None


MISSING = "(absent)"  # first_difference's value of a key one side lacks


def _flatten(node: object, path: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        return {k: v for key, child in node.items() for k, v in _flatten(child, f"{path}{key}.").items()}
    return {path.rstrip("."): node}


def to_yaml(config: object) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))
