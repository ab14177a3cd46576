import subprocess
import sys
from pathlib import Path

import pytest

from lift3d.config import dump_yaml, load_mapping, parse, resolve
from lift3d.errors import ConfigError
from lift3d.experiment import ExperimentConfig

ROOT = Path(__file__).parents[1]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def load(preset: str, *overrides: str) -> ExperimentConfig:
    return parse(ExperimentConfig, load_mapping(ROOT / "configs" / preset, ["system.prompt_processor.prompt=a red cube", *overrides]))


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
        ("data.batch_size=two", "data.batch_size: expected an integer"),
        ("system.renderer_type=nerf-volume", "did you mean 'nerf-volume-renderer'"),
    ],
)
def test_cli_config_error_exits_nonzero_and_writes_nothing(override, message, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train",
         "system.prompt_processor.prompt=a red cube", f"exp_root_dir={out}", override],
        capture_output=True, text=True, cwd=tmp_path,
    )
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
