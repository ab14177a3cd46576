"""Typed experiment configs: YAML presets + ``key=value`` overrides -> checked dataclasses.

Every module's ``Config`` is a dataclass whose fields carry a docstring. ``parse`` turns a
plain mapping into that dataclass and raises :class:`ConfigError` (one line, with a
did-you-mean) for an unknown key at any depth, a wrong type, or an unknown module name,
before any model is built. A field made with :func:`module_field` holds the config of the
module named by a sibling ``*_type`` field and is parsed with that module's own ``Config``.

Scheduled values (:data:`Scheduled`) have one form, resolved by :func:`resolve`:

* a number: constant, e.g. ``lambda_sparsity: 1.0``;
* a list of ``[step, value]`` points with increasing steps: linear between points, held
  constant before the first and after the last, e.g. ``max_step_percent: [[0, 0.98], [5000, 0.5]]``.
  A step change is two points one step apart: ``[[999, 0.0], [1000, 10.0]]``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal, Optional, Union

from lift3d.errors import ConfigError
from lift3d.registry import find, suggest

Scheduled = Annotated[Union[float, int, list], "scheduled"]
"""A value that may change with the global step; see the module docstring for its form."""


def module_field(type_key: str, kind: str) -> Any:
    """A field holding the config of the module named by the sibling field ``type_key``.

    ``kind`` is the dotted path of the base class the module must derive from.
    """
    return field(default_factory=dict, metadata={"module_of": type_key, "kind": kind})


def resolve(value: float | int | list, step: int) -> float:
    """Value of a :data:`Scheduled` at ``step``."""
    if isinstance(value, (int, float)):
        return float(value)
    points = value
    if step <= points[0][0]:
        return float(points[0][1])
    for (s0, v0), (s1, v1) in zip(points[:-1], points[1:]):
        if step <= s1:
            return float(v0 + (v1 - v0) * (step - s0) / (s1 - s0))
    return float(points[-1][1])


def _import_kind(dotted: str) -> type:
    import importlib

    mod, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(mod), name)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_schedule(value: Any, path: str) -> float | list:
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number or a list of [step, value] points, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)) and value:
        points = []
        for p in value:
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p)):
                raise ConfigError(f"{path}: each schedule point must be [step, value], got {p!r}; write e.g. [[0, 0.98], [5000, 0.5]]")
            if float(p[0]) != int(p[0]):
                raise ConfigError(f"{path}: schedule step {p[0]!r} must be an integer")
            points.append([int(p[0]), float(p[1])])
        steps = [p[0] for p in points]
        if any(b <= a for a, b in zip(steps[:-1], steps[1:])):
            raise ConfigError(f"{path}: schedule steps must increase, got {steps}")
        return points
    raise ConfigError(f"{path}: expected a number or a list of [step, value] points, got {value!r}")


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, ...)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        if "scheduled" in tp.__metadata__:
            return _check_schedule(value, path)
        return convert(args[0], value, path)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: must not be null")
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return convert(arm, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} is not a {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{path}: {value!r} is not one of {list(args)}{suggest(str(value), [str(a) for a in args])}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}; quote it")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}: {value!r}")
            items = [convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {convert(key_tp, k, path): convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return parse(tp, value, path)
    raise ConfigError(f"{path}: unsupported annotation {tp!r}")  # a bug in a Config, not user input


MISSING_VALUE = "???"
"""OmegaConf's mark of a value the user must set (e.g. the preset's prompt)."""

_explicit_keys: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("explicit_keys", default=frozenset())


def _is_explicit(key_path: str) -> bool:
    """Whether the user set ``key_path`` (or a mapping above it) on the command line."""
    return any(key_path == k or key_path.startswith(k + ".") for k in _explicit_keys.get())


@contextlib.contextmanager
def explicit_keys(keys: Iterable[str]) -> Iterator[None]:
    """While active, :func:`parse` knows which dotted keys came from the command line.

    When a ``*_type`` key is switched on the command line, keys of the old module's config
    that the preset set and the new module lacks are dropped with a notice; keys the user
    passed that the new module lacks stay errors.
    """
    token = _explicit_keys.set(frozenset(keys))
    try:
        yield
    finally:
        _explicit_keys.reset(token)


def override_keys(overrides: list[str]) -> list[str]:
    """The dotted keys of ``key=value`` overrides."""
    return [item.split("=", 1)[0].strip().lstrip("+~") for item in overrides if "=" in item]


def _lines(exc: ConfigError) -> list[str]:
    return [line for line in str(exc).splitlines() if line.strip()]


def parse(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type.

    Every problem found is reported, one line each, in a single :class:`ConfigError`.
    """
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    errors: list[str] = []
    for key in data:
        if key not in fields:
            errors.append(f"{_join(path, key)}: unknown key{suggest(str(key), list(fields)) or f'; valid keys: {sorted(fields)}'}")
    values: dict[str, Any] = {}
    module_fields = []
    for name, f in fields.items():
        if "module_of" in f.metadata:
            module_fields.append(f)
            continue
        key_path = _join(path, name)
        if name in data and data[name] == MISSING_VALUE:
            errors.append(f"{key_path}: required value is missing ({MISSING_VALUE}); set it, e.g. {key_path}=...")
        elif name in data:
            try:
                values[name] = convert(hints[name], data[name], key_path)
            except ConfigError as exc:
                errors.extend(_lines(exc))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{key_path}: required key is missing; set it in the config or with {key_path}=...")
    for f in module_fields:
        type_key = f.metadata["module_of"]
        module_name = values.get(type_key, fields[type_key].default)
        if type_key in data and type_key not in values:
            continue  # the type key itself was invalid; already reported
        try:
            module_cls = find(module_name, _import_kind(f.metadata["kind"]))
        except ConfigError as exc:
            errors.append(f"{_join(path, type_key)}: {exc}")
            continue
        sub_path = _join(path, f.name)
        sub_data = data.get(f.name, {})
        if _is_explicit(_join(path, type_key)) and isinstance(sub_data, Mapping):
            sub_data = _drop_keys_of_the_old_type(module_cls, sub_data, sub_path, module_name)
        try:
            values[f.name] = parse(module_cls.Config, sub_data, sub_path)
        except ConfigError as exc:
            errors.extend(_lines(exc))
            continue
        check = getattr(module_cls, "check_config", None)
        if check is not None:
            try:
                check(values[f.name], sub_path)
            except ConfigError as exc:
                errors.extend(_lines(exc))
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_notified: set[tuple] = set()


def _drop_keys_of_the_old_type(module_cls: type, data: Mapping, path: str, module_name: str) -> dict:
    """After a ``*_type`` switch: the preset's keys the new module lacks are dropped, with a notice."""
    valid = {f.name for f in dataclasses.fields(module_cls.Config) if f.init}
    dropped = [k for k in data if k not in valid and not _is_explicit(_join(path, k))]
    if dropped and (module_name, path, tuple(dropped)) not in _notified:
        _notified.add((module_name, path, tuple(dropped)))
        print(f"note: {path} is now {module_name!r}, which has no option {', '.join(dropped)}; "
              "dropped the preset's value" + ("s" if len(dropped) > 1 else ""), file=sys.stderr)
    return {k: v for k, v in data.items() if k not in dropped}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def to_dict(cfg: Any) -> Any:
    """Plain YAML-ready data (tuples become lists) from a config dataclass."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def load_mapping(path: str | Path | None, overrides: list[str]) -> dict:
    """Merge a YAML file (optional) with dotlist overrides and resolve interpolations."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} not found; pass an existing YAML file to --config")
            base = _load_yaml(path)
        else:
            base = OmegaConf.create({})
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} has no '='; write overrides as key=value, e.g. seed=1")
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        from omegaconf.errors import InterpolationToMissingValueError

        key = getattr(exc, "full_key", None)
        if isinstance(exc, InterpolationToMissingValueError) and key:  # a ${...} to a value left ???
            raise ConfigError(f"{key}: refers to a required value that is missing (???); set that value") from exc
        msg = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read config{f' at {key}' if key else ''}: {msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping at top level")
    return data


def _char_at(path: Path, line: int, column: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[line]
    except (OSError, IndexError):
        return ""
    return text[column] if column < len(text) else ""


def _load_yaml(path: Path):
    """OmegaConf.load, with a YAML syntax error turned into one line: file, line, column, problem."""
    import yaml
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        hint = "; fix the YAML at that place"
        if mark is not None and _char_at(path, mark.line, mark.column) == "\t":
            problem, hint = f"{problem} (a tab)", "; indent with spaces, not tabs"
        raise ConfigError(f"{where}: YAML syntax error: {problem}{hint}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {str(exc).strip().splitlines()[0]}; fix the file") from exc


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None, width=120)


__all__ = ["Scheduled", "module_field", "resolve", "parse", "explicit_keys", "override_keys", "convert", "to_dict", "load_mapping", "dump_yaml", "dataclass", "field", "Optional", "Literal"]
