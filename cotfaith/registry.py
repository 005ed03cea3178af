"""One registry for every kind of component: backends, tasks, reasoning methods, interventions.

A component is one module that registers itself with `@register(kind, name, config=Schema)`,
plus one YAML file in conf/<group>/ that extends the schema. Nothing central lists components:
`discover()` imports every module of the kind's package (so dropping a module in is enough) and
every module named in the `COTFAITH_PLUGINS` environment variable or the `cotfaith.plugins`
entry-point group (components that live outside this repository). The typed config (a dataclass
whose fields carry docstrings) sits beside its component and is stored in Hydra's ConfigStore
as `schema/<group>/<name>`, so a typo in any key fails at composition naming the key.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from cotfaith.errors import ConfigError

# kind -> (config group in conf/, package holding its modules, config key naming the component)
KINDS: dict[str, tuple[str, str, str]] = {
    "backend": ("model", "cotfaith.models", "provider"),
    "task": ("task", "cotfaith.tasks", "name"),
    "reasoning": ("reasoning", "cotfaith.reasoning", "name"),
    "intervention": ("intervention", "cotfaith.interventions", "name"),
}
PLUGINS_ENV = "COTFAITH_PLUGINS"
ENTRY_POINT_GROUP = "cotfaith.plugins"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    """The component: a class (interventions, reasoning methods) or a factory function."""
    config: type | None
    """Its typed config (a dataclass), stored as schema/<group>/<name>."""

    @property
    def doc(self) -> str:
        text = (getattr(self.obj, "__doc__", None) or "").strip()
        return text.splitlines()[0] if text else ""


_ENTRIES: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_discovered = False


def register(kind: str, name: str, *, config: type | None = None) -> Callable[[T], T]:
    """Class or function decorator: make `obj` the `kind` component called `name`."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; known: {sorted(KINDS)}")

    def decorate(obj: T) -> T:
        old = _ENTRIES[kind].get(name)
        if old is not None and old.obj is not obj and _qualname(old.obj) != _qualname(obj):
            # two modules claiming one name would make runs depend on import order
            raise ValueError(
                f"{kind} {name!r} is registered twice: {_qualname(old.obj)} and {_qualname(obj)}"
            )
        _ENTRIES[kind][name] = Entry(kind, name, obj, config)
        return obj

    return decorate


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def discover() -> None:
    """Import every component module once (idempotent)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for _group, package, _key in KINDS.values():
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)
    for module in _plugin_modules():
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import plugin module {module!r}: {e}") from e
        except Exception as e:  # noqa: BLE001 - a plugin that fails as it loads: one line
            import traceback

            frames = traceback.extract_tb(e.__traceback__)
            where = (
                f" at {frames[-1].filename}, line {frames[-1].lineno}"
                if frames and not isinstance(e, SyntaxError)  # a SyntaxError names its line
                else ""
            )
            raise ConfigError(
                f"{PLUGINS_ENV}: plugin module {module!r} failed on import{where}: "
                f"{type(e).__name__}: {e}"
            ) from e


def _plugin_modules() -> list[str]:
    named = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        named.append(ep.value.split(":", 1)[0])
    return named


def entries(kind: str) -> dict[str, Entry]:
    discover()
    return dict(_ENTRIES[kind])


def names(kind: str) -> list[str]:
    return sorted(entries(kind))


def lookup(kind: str, name: Any, *, where: str | None = None) -> Entry:
    """The `kind` component called `name`; an unknown name fails naming the key and the
    known names."""
    found = entries(kind).get(str(name)) if name is not None else None
    if found is None:
        group, _package, key = KINDS[kind]
        raise ConfigError(
            f"{where or f'{group}.{key}'}: unknown {kind} {name!r}; known: {names(kind)}"
        )
    return found


def maybe(kind: str, name: str) -> Entry | None:
    """The component if it is registered (records of a component since removed: None)."""
    return entries(kind).get(name)


def store_schemas(config_store: Any) -> None:
    """Store every component's typed config as schema/<group>/<name> for Hydra."""
    for kind, (group, _package, _key) in KINDS.items():
        for name, entry in entries(kind).items():
            if entry.config is not None:
                config_store.store(group=f"schema/{group}", name=name, node=entry.config)
