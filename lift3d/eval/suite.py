"""Evaluation suites: methods x prompts x seeds x a hyperparameter grid, read from typed YAML.

A suite file looks like ``suites/bundled-text.yaml``::

    name: bundled-text
    methods:
      - name: dreamfusion
        preset: configs/dreamfusion-bundled.yaml
        overrides: {}
    prompts: ["a red house", "a blue sphere"]
    seeds: [0]
    grid:
      system.guidance.guidance_scale: [7.5, 10.0]
    overrides: {trainer.max_steps: 450}

Every run's full experiment config is parsed (unknown preset, key or module name is a
``ConfigError`` with a did-you-mean) when the suite is loaded, before any run starts.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lift3d.config import explicit_keys, load_mapping, override_keys, parse
from lift3d.errors import ConfigError


@dataclass
class StageConfig:
    """A later stage of a multi-stage method (e.g. Magic3D's mesh refinement)."""

    preset: str
    """YAML preset of the stage; it starts from the previous stage's trial (``system.geometry_convert_from``)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config overrides of this stage. The prompt, the seed and the grid's values are passed on too;
    the suite-level ``overrides`` are not (they are often another geometry's or renderer's keys)."""


@dataclass
class MethodConfig:
    """One method of a suite: a preset and the overrides that make it this method."""

    name: str
    """Short name shown in tables and used in run ids (letters, digits, ``-`` and ``_``)."""
    preset: str
    """YAML preset, relative to the suite file or the lift3d checkout (e.g. ``configs/dreamfusion-bundled.yaml``)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config overrides of this method, ``key: value`` with dotted keys."""
    then: list[StageConfig] = field(default_factory=list)
    """Later stages, run in order, each from the previous one's trial; the method's result is the
    last stage's (exported and scored), its wall time that of all stages."""


@dataclass
class SuiteConfig:
    """An evaluation suite."""

    name: str
    """Name of the suite; an output folder holds the results of one suite only."""
    methods: list[MethodConfig]
    """Methods (method variants) to compare."""
    prompts: list[str]
    """Text prompts; ``system.prompt_processor.prompt`` of each run."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds; tables show mean ± std over them."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Hyperparameter grid: dotted config key -> values; every combination is run."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Overrides applied to every run (before the method's and the grid's)."""
    export: bool = True
    """Export each run's mesh (needed for Chamfer distance and volume IoU)."""
    clip_model: str | None = None
    """Local CLIP model directory (``CLIPModel`` + processor in transformers layout) for a CLIP score; none by default."""


@dataclass
class RunSpec:
    """One run of a suite: everything a worker needs, JSON-serialisable."""

    run_id: str
    method: str
    preset: str
    prompt: str
    seed: int
    hparams: dict[str, Any]
    overrides: list[str]
    export: bool
    clip_model: str | None
    stages: list[dict] = field(default_factory=list)
    """Later stages: ``{"preset": path, "overrides": [key=value, ...]}`` each."""

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _value_text(value: Any) -> str:
    """An override value as OmegaConf reads it back (YAML spelling of non-finite floats)."""
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and abs(value) == float("inf"):
        return ".inf" if value > 0 else "-.inf"
    return json.dumps(value) if not isinstance(value, str) else value


def _resolve_preset(preset: str, suite_dir: Path) -> Path:
    candidates = [Path(preset), suite_dir / preset, Path(__file__).resolve().parents[2] / preset]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise ConfigError(f"preset {preset!r} not found (looked next to the suite and in the lift3d checkout); name an existing YAML file, e.g. configs/dreamfusion-bundled.yaml")


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and check a suite file (types, keys, non-empty lists)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} not found; pass an existing YAML file, e.g. suites/bundled-text.yaml")
    data = load_mapping(path, [])
    suite = parse(SuiteConfig, data, "suite")
    if not suite.methods:
        raise ConfigError(f"{path}: suite.methods is empty; list at least one method (name + preset)")
    if not suite.prompts or any(not p.strip() for p in suite.prompts):
        raise ConfigError(f"{path}: suite.prompts is empty or holds an empty prompt; list at least one prompt")
    if not suite.seeds:
        raise ConfigError(f"{path}: suite.seeds is empty; list at least one seed, e.g. [0]")
    names = [m.name for m in suite.methods]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"{path}: method name {name!r} may hold only letters, digits, '-' and '_'")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: method names must be unique, got {names}")
    for key, values in suite.grid.items():
        if not values:
            raise ConfigError(f"{path}: suite.grid.{key} has no values; give at least one or remove the key")
    return suite


def expand(suite: SuiteConfig, suite_path: str | Path) -> list[RunSpec]:
    """All runs of the suite, each checked by parsing its full experiment config."""
    from lift3d.experiment import ExperimentConfig

    suite_dir = Path(suite_path).resolve().parent
    keys = list(suite.grid)
    combos = list(itertools.product(*(suite.grid[k] for k in keys))) or [()]
    runs = []
    for method in suite.methods:
        preset = _resolve_preset(method.preset, suite_dir)
        for values in combos:
            hparams = dict(zip(keys, values))
            for prompt in suite.prompts:
                for seed in suite.seeds:
                    merged = {**suite.overrides, **method.overrides, **hparams, "system.prompt_processor.prompt": prompt, "seed": seed}
                    overrides = [f"{k}={_value_text(v)}" for k, v in merged.items()]
                    try:
                        with explicit_keys(override_keys(overrides)):
                            parse(ExperimentConfig, load_mapping(preset, overrides))
                    except ConfigError as exc:
                        raise ConfigError(f"method {method.name!r}: {exc}") from exc
                    stages = [_stage_spec(method.name, i, stage, suite_dir, {**stage.overrides, **hparams, "seed": seed,
                                                                          "system.prompt_processor.prompt": prompt})
                              for i, stage in enumerate(method.then, start=2)]
                    hp = "_".join(f"{k.rsplit('.', 1)[-1]}-{_slug(_value_text(v))}" for k, v in hparams.items())
                    run_id = "__".join(x for x in (method.name, hp, _slug(prompt), f"s{seed}") if x)
                    runs.append(RunSpec(run_id, method.name, str(preset), prompt, seed, hparams, overrides, suite.export, suite.clip_model, stages))
    ids = [r.run_id for r in runs]
    clash = next((i for i in ids if ids.count(i) > 1), None)
    if clash is not None:
        raise ConfigError(f"two runs of the suite would both be named {clash!r} (prompts or grid values that differ only in punctuation); make them distinct")
    return runs


def _stage_spec(method: str, number: int, stage: StageConfig, suite_dir: Path, values: dict[str, Any]) -> dict:
    """A later stage's preset and overrides, checked by parsing (its source trial is filled in by the worker)."""
    from lift3d.experiment import ExperimentConfig

    preset = _resolve_preset(stage.preset, suite_dir)
    overrides = [f"{k}={_value_text(v)}" for k, v in values.items()]
    check = [*overrides, "system.geometry_convert_from=<previous stage>"]
    try:
        with explicit_keys(override_keys(check)):
            parse(ExperimentConfig, load_mapping(preset, check))
    except ConfigError as exc:
        raise ConfigError(f"method {method!r}, stage {number}: {exc}") from exc
    return {"preset": str(preset), "overrides": overrides}
