"""Registry of modules by name: ``@register("name")`` on a class, ``find("name")`` to get it.

Modules from other packages are added by an entry point in the ``lift3d.plugins`` group
(its value a module to import) or by ``--plugin path.py`` on the command line.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TypeVar

from lift3d.errors import PluginError, RegistryError

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
ENTRY_POINT_GROUP = "lift3d.plugins"


def register(name: str) -> Callable[[T], T]:
    """Class decorator that makes the class findable as ``name``; a taken name raises."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            other = _REGISTRY[name]
            raise RegistryError(
                f"module name {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
                f"choose another name for {cls.__module__}.{cls.__qualname__}"
            )
        _REGISTRY[name] = cls
        cls.registered_name = name
        return cls

    return wrap


def suggest(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ``did you mean ...?`` hint, or an empty string when nothing is close."""
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def names(kind: type | None = None) -> list[str]:
    """Registered names, optionally only those whose class derives from ``kind``."""
    _load_builtin()
    return sorted(n for n, c in _REGISTRY.items() if kind is None or issubclass(c, kind))


def find(name: str, kind: type | None = None) -> type:
    """The class registered as ``name``; with ``kind``, it must derive from that class."""
    _load_builtin()
    if name not in _REGISTRY:
        choices = names(kind)
        raise RegistryError(f"unknown module {name!r}{suggest(name, choices) or f'; registered: {choices}'}")
    cls = _REGISTRY[name]
    if kind is not None and not issubclass(cls, kind):
        choices = names(kind)
        raise RegistryError(
            f"module {name!r} is not a {kind.__name__}{suggest(name, choices) or f'; choose one of {choices}'}"
        )
    return cls


_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        importlib.import_module("lift3d.modules")
        load_entry_point_plugins()


def load_entry_point_plugins() -> None:
    """Import every module named in the ``lift3d.plugins`` entry-point group."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must stop the run, not be skipped
            raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}) failed to import: {exc!r}; fix or uninstall it") from exc


def load_plugin_file(path: str | Path) -> None:
    """Import a plugin from a Python file so that its ``@register`` calls run."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"plugin file {str(path)!r} does not exist; pass the path of a .py file to --plugin")
    mod_name = f"lift3d_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise PluginError(f"plugin {str(path)!r} failed to import: {exc!r}; fix the plugin file") from exc
