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

An image-to-3D suite lists ``images:`` instead of ``prompts:`` (each run's ``data.image_path``; a
method with a text prior gets the image's caption as its prompt). ``grid_mode: one_at_a_time``
sweeps each key around the preset's settings instead of running every combination, and a
method's own ``grid`` adds keys only it has (``suites/bundled-image.yaml``).

Every run's full experiment config is parsed (unknown preset, key or module name is a
``ConfigError`` with a did-you-mean) when the suite is loaded, before any run starts.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Hyperparameters of this method only (e.g. its own prior's guidance scale), swept with the suite's ``grid``."""
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
    prompts: list[str] = field(default_factory=list)
    """Text prompts (text-to-3D); ``system.prompt_processor.prompt`` of each run."""
    images: list[str] = field(default_factory=list)
    """Input images (image-to-3D), relative to the suite file or the lift3d checkout; ``data.image_path``
    of each run. A method with a text prior gets the image's caption as its prompt: the ``caption`` of
    the image's JSON sidecar (the bundled examples have one), else the file name with spaces."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds; tables show mean ± std over them."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Hyperparameter grid: dotted config key -> values (with each method's own ``grid``)."""
    grid_mode: Literal["product", "one_at_a_time"] = "product"
    """``product``: every combination is run; ``one_at_a_time``: the preset's settings (``default``), and
    each value of each key with the other keys at the preset's values (a sweep around the defaults:
    far fewer runs). Results rows then carry the preset's values of all keys, and ``varied``."""
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
    image: str | None = None
    """Input image of an image-to-3D run (``prompt`` is then its caption)."""
    varied: str | None = None
    """One-at-a-time grids: the key this run changes from the preset's value (None: the preset's settings)."""
    sweep: bool = False
    """Whether the suite's grid is one-at-a-time (``hparams`` then holds every key's value)."""

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


def _resolve_file(name: str, suite_dir: Path, what: str, example: str) -> Path:
    candidates = [Path(name), suite_dir / name, Path(__file__).resolve().parents[2] / name]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise ConfigError(f"{what} {name!r} not found (looked next to the suite and in the lift3d checkout); name an existing file, e.g. {example}")


def _resolve_preset(preset: str, suite_dir: Path) -> Path:
    return _resolve_file(preset, suite_dir, "preset", "configs/dreamfusion-bundled.yaml")


def image_caption(image: Path) -> str:
    """The caption of an input image: its JSON sidecar's ``caption``, else its file name with spaces."""
    from lift3d.priors.world.examples import read_truth

    truth = read_truth(image)
    return truth.caption if truth is not None and truth.caption else re.sub(r"[_-]+", " ", image.stem).strip()


def _dotted_get(cfg: Any, key: str) -> Any:
    """The value at a dotted key of a parsed config (dataclass attributes and mapping entries)."""
    value = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    return value


def _settings(grid: dict[str, list[Any]], mode: str) -> list[tuple[dict[str, Any], str | None]]:
    """(grid values to set, the key varied or None) of every setting; ``one_at_a_time`` starts with the preset's."""
    keys = list(grid)
    if mode == "product":
        return [(dict(zip(keys, values)), None) for values in itertools.product(*(grid[k] for k in keys))] or [({}, None)]
    return [({}, None)] + [({k: v}, k) for k in keys for v in grid[k]]


def load_suite(path: str | Path) -> SuiteConfig:
    """Read and check a suite file (types, keys, non-empty lists)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} not found; pass an existing YAML file, e.g. suites/bundled-text.yaml")
    data = load_mapping(path, [])
    suite = parse(SuiteConfig, data, "suite")
    if not suite.methods:
        raise ConfigError(f"{path}: suite.methods is empty; list at least one method (name + preset)")
    if bool(suite.prompts) == bool(suite.images):
        raise ConfigError(f"{path}: a suite has either prompts (text-to-3D) or images (image-to-3D); give exactly one of the two lists")
    if any(not p.strip() for p in suite.prompts):
        raise ConfigError(f"{path}: suite.prompts holds an empty prompt; remove it or write the prompt")
    for image in suite.images:
        _resolve_file(image, path.resolve().parent, "image", "examples/images/a_green_house.png")
    if not suite.seeds:
        raise ConfigError(f"{path}: suite.seeds is empty; list at least one seed, e.g. [0]")
    names = [m.name for m in suite.methods]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(f"{path}: method name {name!r} may hold only letters, digits, '-' and '_'")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: method names must be unique, got {names}")
    for where, grid in [("suite.grid", suite.grid)] + [(f"method {m.name!r} grid", m.grid) for m in suite.methods]:
        for key, values in grid.items():
            if not values:
                raise ConfigError(f"{path}: {where}.{key} has no values; give at least one or remove the key")
    return suite


def _inputs(suite: SuiteConfig, suite_dir: Path) -> list[tuple[str, str | None]]:
    """(prompt, image path or None) of every input of the suite."""
    if not suite.images:
        return [(p, None) for p in suite.prompts]
    paths = [_resolve_file(i, suite_dir, "image", "examples/images/a_green_house.png") for i in suite.images]
    return [(image_caption(p), str(p)) for p in paths]


def _takes_prompt(preset: Path, overrides: dict[str, Any]) -> bool:
    """Whether the method's config has a prompt processor (a text prior) to give the input's caption."""
    system = load_mapping(preset, [f"{k}={_value_text(v)}" for k, v in overrides.items()]).get("system") or {}
    return "prompt_processor" in system


def expand(suite: SuiteConfig, suite_path: str | Path) -> list[RunSpec]:
    """All runs of the suite, each checked by parsing its full experiment config."""
    from lift3d.experiment import ExperimentConfig

    suite_dir = Path(suite_path).resolve().parent
    inputs = _inputs(suite, suite_dir)
    sweep = suite.grid_mode == "one_at_a_time"
    runs = []
    for method in suite.methods:
        preset = _resolve_preset(method.preset, suite_dir)
        grid = {**suite.grid, **method.grid}
        with_prompt = not suite.images or _takes_prompt(preset, {**suite.overrides, **method.overrides})
        for values, varied in _settings(grid, suite.grid_mode):
            for prompt, image in inputs:
                given = ({"data.image_path": image} if image else {}) | ({"system.prompt_processor.prompt": prompt} if with_prompt else {})
                for seed in suite.seeds:
                    merged = {**suite.overrides, **method.overrides, **values, **given, "seed": seed}
                    overrides = [f"{k}={_value_text(v)}" for k, v in merged.items()]
                    try:
                        with explicit_keys(override_keys(overrides)):
                            cfg = parse(ExperimentConfig, load_mapping(preset, overrides))
                        hparams = {k: _dotted_get(cfg, k) for k in grid} if sweep else values
                    except ConfigError as exc:
                        raise ConfigError(f"method {method.name!r}: {exc}") from exc
                    except AttributeError as exc:
                        raise ConfigError(f"method {method.name!r}: a grid key names no setting of its config ({exc}); "
                                          "move the key to the grid of the methods that have it") from exc
                    stages = [_stage_spec(method.name, i, stage, suite_dir, {**stage.overrides, **values, **given, "seed": seed})
                              for i, stage in enumerate(method.then, start=2)]
                    hp = "_".join(f"{k.rsplit('.', 1)[-1]}-{_slug(_value_text(v))}" for k, v in values.items())
                    name = _slug(Path(image).stem) if image else _slug(prompt)
                    run_id = "__".join(x for x in (method.name, hp, name, f"s{seed}") if x)
                    runs.append(RunSpec(run_id, method.name, str(preset), prompt, seed, hparams, overrides, suite.export,
                                        suite.clip_model, stages, image, varied if sweep else None, sweep))
    runs.sort(key=lambda r: suite.seeds.index(r.seed))  # seed by seed: an interrupted suite leaves whole seeds
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
