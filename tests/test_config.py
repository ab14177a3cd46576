import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lift3d.config import dump_yaml, explicit_keys, load_mapping, override_keys, parse, resolve
from lift3d.errors import ConfigError
from lift3d.experiment import ExperimentConfig

ROOT = Path(__file__).parents[1]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def _missing_keys(node, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


REQUIRED = {
    "prompt": "a red cube",
    "geometry_convert_from": "outputs/coarse/a_red_cube",  # a later stage starts from the stage before
    "image_path": str(ROOT / "examples" / "images" / "a_green_house.png"),
    "pretrained_model_name_or_path": "/some/prior",  # a real prior's directory
}


def required_values(preset: str) -> list[str]:
    """The values each preset leaves to the user (???): a prompt or an image, a real prior's path, a source stage."""
    import yaml

    data = yaml.safe_load((ROOT / "configs" / preset).read_text())
    return [f"{key}={REQUIRED[key.rsplit('.', 1)[-1]]}" for key in _missing_keys(data)]


def load(preset: str, *overrides: str) -> ExperimentConfig:
    """As launch.py parses: the overrides are the user's explicit keys."""
    with explicit_keys(override_keys(list(overrides))):
        return parse(ExperimentConfig, load_mapping(ROOT / "configs" / preset, [*required_values(preset), *overrides]))


def test_child_configs_are_typed_dataclasses():
    cfg = load("dreamfusion-if.yaml")
    from lift3d.geometry.implicit_volume import ImplicitVolume
    from lift3d.guidance.sds import DiffusersSDSGuidance

    assert isinstance(cfg.system.geometry, ImplicitVolume.Config)
    assert isinstance(cfg.system.guidance, DiffusersSDSGuidance.Config)
    assert cfg.system.geometry.encoding.log2_hashmap_size == 19
    assert cfg.system.prompt_processor.prompt == "a red cube"


def test_interpolation_follows_overrides():
    cfg = load("dreamfusion-sd.yaml", "system.guidance.pretrained_model_name_or_path=/some/prior")
    assert cfg.system.prompt_processor.pretrained_model_name_or_path == "/some/prior"


@dataclass
class CliResult:
    returncode: int
    stderr: str


def _cli(capsys, tmp_path, *args, config="configs/dreamfusion-if.yaml") -> tuple[CliResult, Path]:
    """``launch.py --train`` through the CLI's entry point in this process (a config error stops it
    before any work, so no process of its own is needed): its exit code and stderr, and its output folder."""
    from lift3d.cli import main

    out = tmp_path / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(ROOT / config) if not Path(config).is_absolute() else config, "--train", f"exp_root_dir={out}", *args])
    return CliResult(exit_.value.code, capsys.readouterr().err), out


@pytest.mark.parametrize(
    "override, message",
    [
        ("system.geometry.encoding.n_levelz=4", r"system\.geometry\.encoding\.n_levelz: unknown key; did you mean 'n_levels'"),
        ("system.geometry.encoding.n_levels=many", r"system\.geometry\.encoding\.n_levels: expected an integer"),
        ("system.geometry_type=implicit-volum", r"system\.geometry_type: unknown module 'implicit-volum'; did you mean 'implicit-volume'"),
        ("system.material_type=implicit-volume", r"system\.material_type: module 'implicit-volume' is not a BaseMaterial"),
        ("system.guidance.weighting=sdss", r"system\.guidance\.weighting: 'sdss' is not one of .*did you mean 'sds'"),
        ("system.loss.lambda_sdss=1.0", r"system\.loss\.lambda_sdss: no module produces this loss; did you mean 'lambda_sds'"),
        ("system.guidance.max_step_percent=[[10,0.9],[5,0.5]]", r"schedule steps must increase"),
        ("data.elevation_range=[50,10]", r"data\.elevation_range: lower bound 50\.0 is above upper bound"),
        ("trainerr.max_steps=3", r"trainerr: unknown key; did you mean 'trainer'"),
    ],
)
def test_config_errors_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load("dreamfusion-if.yaml", override)


def test_missing_prompt_is_an_error():
    with pytest.raises(ConfigError, match=r"system\.prompt_processor\.prompt: required value is missing"):
        parse(ExperimentConfig, load_mapping(ROOT / "configs" / "dreamfusion-if.yaml", []))


@pytest.mark.parametrize("preset", [p.name for p in PRESETS])
def test_resolved_config_round_trips(preset, tmp_path):
    cfg = load(preset)
    path = tmp_path / "parsed.yaml"
    path.write_text(dump_yaml(cfg))
    again = parse(ExperimentConfig, load_mapping(path, []))
    assert again == cfg
    assert dump_yaml(again) == dump_yaml(cfg)


def test_schedule_forms():
    assert resolve(0.5, 1000) == 0.5
    ramp = [[0, 10.0], [100, 20.0]]
    assert resolve(ramp, -5) == 10.0
    assert resolve(ramp, 50) == pytest.approx(15.0)
    assert resolve(ramp, 500) == 20.0
    piecewise = [[0, 0.0], [99, 0.0], [100, 5.0], [200, 1.0]]
    assert resolve(piecewise, 99) == 0.0
    assert resolve(piecewise, 100) == 5.0
    assert resolve(piecewise, 150) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("system.geometry.encoding.n_levelz=4", "unknown key; did you mean 'n_levels'"),
        ("data.batch_size=two", "data.batch_size: expected a number or a list of [step, value] points"),
        ("system.renderer_type=nerf-volume", "did you mean 'nerf-volume-renderer'"),
    ],
)
def test_cli_config_error_exits_nonzero_and_writes_nothing(override, message, tmp_path, capsys):
    proc, out = _cli(capsys, tmp_path, "system.prompt_processor.prompt=a red cube", override)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_param_lrs_override_by_dotted_path():
    cfg = load("dreamfusion-if.yaml", "system.optimizer.param_lrs.geometry.encoding=0.04")
    assert cfg.system.optimizer.param_lrs["geometry.encoding"] == 0.04
    assert cfg.system.optimizer.param_lrs["geometry.density_network"] == 0.001
    with pytest.raises(ConfigError, match=r"param_lrs\.geometry\.encoding: expected a learning rate"):
        load("dreamfusion-if.yaml", "system.optimizer.param_lrs.geometry.encoding=fast")


# ---- errors found at parse time, all at once ------------------------------------------------




@pytest.mark.parametrize(
    "overrides, message",
    [
        (["system.geometry.normal_type=none"],
         "system.geometry.normal_type: none, but material 'diffuse-with-point-light' shades with normals"),
        (["system.geometry.normal_type=none", "system.material_type=no-material", "system.loss.lambda_orient=0.1"],
         "system.loss.lambda_orient: the orientation loss needs normals"),
        (["system.optimizer.param_lrs.geometry.encodng=0.1"],
         "system.optimizer.param_lrs.geometry.encodng: matches no trainable parameter; did you mean 'geometry.encoding'"),
    ],
)
def test_cross_module_errors_stop_at_parse_time(overrides, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("dreamfusion-if.yaml", *overrides)
    proc, out = _cli(capsys, tmp_path, "system.prompt_processor.prompt=a red cube", *overrides)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert any(line == f"error: {message}" or line.startswith(f"error: {message}") for line in proc.stderr.splitlines())
    assert not out.exists()


def test_several_errors_are_reported_together_one_line_each(tmp_path, capsys):
    # no prompt (the preset's ???), a misspelled key and a wrong type
    proc, out = _cli(capsys, tmp_path, "system.geometry.encoding.n_levelz=4", "data.batch_size=two")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and not out.exists()
    assert any("system.prompt_processor.prompt: required value is missing" in e for e in errors)
    assert any("system.geometry.encoding.n_levelz: unknown key; did you mean 'n_levels'" in e for e in errors)
    assert any("data.batch_size: expected a number or a list of [step, value] points" in e for e in errors)
    assert len(errors) == 3


@pytest.mark.parametrize(
    "text, line, column, what",
    [
        ("name: x\nsystem:\n\tgeometry_type: implicit-volume\n", 3, 1, "tab"),
        ("name: x\ndata:\n  elevation_range: [10, 20\n  batch_size: 2\n", 4, 13, "expected ',' or ']'"),
    ],
)
def test_yaml_syntax_error_is_one_line_with_file_line_and_column(text, line, column, what, tmp_path, capsys):
    preset = tmp_path / "broken.yaml"
    preset.write_text(text)
    proc, out = _cli(capsys, tmp_path, config=str(preset))
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not out.exists()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {preset}:{line}:{column}: YAML syntax error") and what in lines[0]


# ---- switching a module's type by an override -----------------------------------------------


def _readme_plugin(tmp_path) -> tuple[Path, list[str]]:
    """The README's extension example, verbatim: the plugin file and the command that uses it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Extending lift3d"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"```\n(python launch\.py [^\n]*--plugin my_material\.py[^\n]*)\n```", section).group(1)
    (tmp_path / "my_material.py").write_text(code)
    return tmp_path / "my_material.py", shlex.split(command)[2:]


def test_readme_plugin_example_switches_the_material_of_the_bundled_preset(tmp_path):
    _, args = _readme_plugin(tmp_path)
    args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
    small = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.n_test_views=2", "data.n_val_views=1",
             "data.eval_resolution=16", "data.resolution=16", "data.batch_size=1", "trainer.enable_progress_bar=false",
             f"exp_root_dir={tmp_path / 'out'}"]
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args, *small], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [x for x in proc.stderr.splitlines() if x.startswith("note: system.material is now 'my-material'")]
    assert len(notes) == 1 and "ambient_light_color" in notes[0] and "albedo_prob" in notes[0]
    parsed = next((tmp_path / "out").glob("*/*/configs/parsed.yaml")).read_text()
    assert "material_type: my-material" in parsed and "gain: 1.0" in parsed and "ambient_light_color" not in parsed


def test_a_key_the_user_passes_for_the_old_type_stays_an_error(tmp_path):
    from lift3d.registry import load_plugin_file

    plugin, _ = _readme_plugin(tmp_path)
    load_plugin_file(plugin)
    with pytest.raises(ConfigError, match=r"system\.material\.ambient_only_steps: unknown key; valid keys: \['gain'\]"):
        load("dreamfusion-bundled.yaml", "system.material_type=my-material", "system.material.ambient_only_steps=3")
    # without the switch on the command line, a preset's key unknown to its own type is still an error
    with pytest.raises(ConfigError, match=r"system\.material\.ambient_only_steps: unknown key"):
        parse(ExperimentConfig, {**load_mapping(ROOT / "configs" / "dreamfusion-bundled.yaml", ["system.prompt_processor.prompt=a red cube"]),
                                 "system": {**load_mapping(ROOT / "configs" / "dreamfusion-bundled.yaml", ["system.prompt_processor.prompt=a"])["system"],
                                            "material_type": "my-material"}})
