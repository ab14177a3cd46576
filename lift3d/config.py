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

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from lift3d.errors import ConfigError
from lift3d.registry import find, suggest

Scheduled = Annotated[Union[float, list], "scheduled"]
"""A value that may change with the global step; see the module docstring for its form."""


def module_field(type_key: str, kind: str) -> Any:
    """A field holding the config of the module named by the sibling field ``type_key``.

    ``kind`` is the dotted path of the base class the module must derive from.
    """
    return field(default_factory=dict, metadata={"module_of": type_key, "kind": kind})


def resolve(value: float | list, step: int) -> float:
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


def parse(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    where = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(f"{_join(path, key)}: unknown key{suggest(str(key), list(fields)) or f'; valid keys: {sorted(fields)}'}")
    values: dict[str, Any] = {}
    module_fields = []
    for name, f in fields.items():
        if "module_of" in f.metadata:
            module_fields.append(f)
            continue
        if name in data:
            values[name] = convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: required key is missing; set it in the config or with {_join(path, name)}=...")
    for f in module_fields:
        type_key = f.metadata["module_of"]
        module_name = values.get(type_key, fields[type_key].default)
        try:
            module_cls = find(module_name, _import_kind(f.metadata["kind"]))
        except ConfigError as exc:
            raise ConfigError(f"{_join(path, type_key)}: {exc}") from exc
        sub_path = _join(path, f.name)
        values[f.name] = parse(module_cls.Config, data.get(f.name, {}), sub_path)
        check = getattr(module_cls, "check_config", None)
        if check is not None:
            check(values[f.name], sub_path)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


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
            base = OmegaConf.load(path)
        else:
            base = OmegaConf.create({})
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} has no '='; write overrides as key=value, e.g. seed=1")
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        from omegaconf.errors import MissingMandatoryValue

        key = getattr(exc, "full_key", None)
        if isinstance(exc, MissingMandatoryValue) and key:
            raise ConfigError(f"{key}: required value is missing (???); set it, e.g. {key}=...") from exc
        msg = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read config{f' at {key}' if key else ''}: {msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(path)!r} must be a mapping at top level")
    return data


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None, width=120)


__all__ = ["Scheduled", "module_field", "resolve", "parse", "convert", "to_dict", "load_mapping", "dump_yaml", "dataclass", "field", "Optional", "Literal"]
