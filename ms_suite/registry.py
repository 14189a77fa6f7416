"""Named registries: the one way to extend the suite.

Every extensible kind (models, datasets, tasks, optimizers, LR schedules, compression algorithms,
weight converters) is a :class:`Registry` declared here, at the bottom of the import order, so the
recipe schema can check a name against it. An entry is registered where it is defined, with a
decorator::

    from ms_suite.registry import OPTIMIZERS

    @OPTIMIZERS.register("lion")
    def lion(params, lr, cfg): ...

Each registry names the packages its entries live in; the first lookup imports every module of those
packages (as MMEngine's ``locations`` do), so a new dataset or optimizer is one new file in its
package and nothing else changes.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

from ms_suite.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries (a class or function) with optional metadata; did-you-mean on a miss."""

    def __init__(self, kind: str, locations: Sequence[str], hint: str = "") -> None:
        self.kind = kind
        self.locations = tuple(locations)
        self.hint = hint  # where a user sees the names, e.g. "`ms-suite list`"
        self._entries: Dict[str, T] = {}
        self._meta: Dict[str, Any] = {}
        self._discovered = False

    def register(self, name: Optional[str] = None, meta: Any = None) -> Callable[[T], T]:
        """Decorator: register the entry under ``name`` (default: its ``__name__``)."""

        def wrap(entry: T) -> T:
            self.add(name or entry.__name__, entry, meta)
            return entry

        return wrap

    def add(self, name: str, entry: T, meta: Any = None) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        self._meta[name] = meta

    def get(self, name: str) -> T:
        self.check(name)
        return self._entries[name]

    def meta(self, name: str) -> Any:
        self.check(name)
        return self._meta[name]

    def check(self, name: str) -> None:
        """Raise a UserError naming the closest registered name when ``name`` is unknown."""
        if name not in self.names():
            raise UserError(self.unknown(name))

    def unknown(self, name: str) -> str:
        """The one-line message for an unknown ``name``."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = f" (see {self.hint})" if self.hint else f" (known: {', '.join(self.names())})"
        return f"unknown {self.kind} {name!r}{hint}{where}"

    def names(self) -> List[str]:
        self._discover()
        return sorted(self._entries)

    def items(self) -> Iterator[Tuple[str, T]]:
        for name in self.names():
            yield name, self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def _discover(self) -> None:
        """Import every module of the registry's packages once (registration happens on import)."""
        if self._discovered:
            return
        self._discovered = True
        for location in self.locations:
            package = importlib.import_module(location)
            for module in pkgutil.iter_modules(package.__path__, location + "."):
                importlib.import_module(module.name)


MODELS: Registry = Registry("model", ["model_zoo"], hint="`ms-suite list`")
DATASETS: Registry = Registry("dataset", ["ms_suite.data.sources"])
TASKS: Registry = Registry("task", ["ms_suite.engine.tasks"])
OPTIMIZERS: Registry = Registry("optimizer", ["ms_suite.engine.optim"])
SCHEDULES: Registry = Registry("lr schedule", ["ms_suite.engine.optim"])
COMPRESSION: Registry = Registry("compression algorithm", ["ms_suite.compression"])
CONVERTERS: Registry = Registry("weight format", ["model_zoo"])

ALL = {"models": MODELS, "datasets": DATASETS, "tasks": TASKS, "optimizers": OPTIMIZERS,
       "schedules": SCHEDULES, "compression": COMPRESSION, "converters": CONVERTERS}
