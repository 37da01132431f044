"""Named extension points: a small registry of objects, or of lazy "package.module:attr" references.

One class serves every extension point (laws and fitting methods here, published studies; launch
backends and stages in `testbed`), so each is extended the same way: one `register` call.

    FITTERS = Registry("fitting method", error=AnalysisError)
    FITTERS.register("huber_log", fit_huber_log)              # an object
    FITTERS.register("slow_thing", "mypackage.slow:fitter")     # imported on first get
    FITTERS.get("huber_log")

Standard library only: `testbed` uses it too, and `analysis` must not import `testbed`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to entries, in registration order.

    An entry is any object, or a string "package.module:attr" (attr may be dotted) that `get`
    imports the first time the name is asked for and then keeps (an ImportError of that module
    propagates as it is). Every refusal (an unknown name, a name registered twice, a malformed
    reference or one that names nothing) raises `error` with a one-line message.
    """

    def __init__(self, kind: str, error: type[Exception] = LookupError, plural: str | None = None):
        self.kind = kind  # what an entry is, for messages: "law", "fitting method"
        self.plural = plural or f"{kind}s"
        self.error = error
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: T | str | None = None) -> Any:
        """Add `target` under `name` and return it; without a target, a decorator that adds what it
        decorates. A name already registered is refused."""
        if target is None:
            return lambda decorated: self.register(name, decorated)
        if name in self._entries:
            raise self.error(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str) and not _is_reference(target):
            raise self.error(f"{self.kind} {name!r}: {target!r} is not a 'package.module:attr' reference")
        self._entries[name] = target
        return target

    def get(self, name: object) -> T:
        """The entry under `name`, imported first if it is a lazy reference; any other name (a config's
        value, whatever its type) is refused."""
        if not isinstance(name, str) or name not in self._entries:
            raise self.error(self._unknown(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = self._load(name, entry)
        return entry

    __getitem__ = get

    def _unknown(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known {self.plural}: {', '.join(self._entries) or 'none'}"

    def _load(self, name: str, reference: str) -> Any:
        module_name, _, attribute = reference.partition(":")
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                raise self.error(f"{self.kind} {name!r}: {reference!r} names nothing ({part!r} missing)") from None
        return value

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs in registration order; lazy entries are imported."""
        return ((name, self.get(name)) for name in self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def _is_reference(text: str) -> bool:
    module_name, colon, attribute = text.partition(":")
    parts = [*module_name.split("."), *attribute.split(".")]
    return bool(colon) and all(part.isidentifier() for part in parts)
