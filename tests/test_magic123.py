"""Magic123 and the reference + text-prior baseline: two priors at once, coarse NeRF then DMTet,
the real-prior presets on tiny random priors, which prior is loaded, config errors."""

from __future__ import annotations

import csv

import pytest
import torch

from run_helpers import ROOT, launch, preset_with, trial_dirs

COMMON = {"data.reference_resolution": 16, "data.random_camera.resolution": 16, "data.random_camera.batch_size": 2,
          "data.random_camera.eval_resolution": 16, "data.random_camera.n_test_views": 5, "data.random_camera.n_val_views": 2,
          "trainer.val_check_interval": 100, "trainer.enable_progress_bar": False, "trainer.log_every_n_steps": 1,
          "system.geometry.encoding.log2_hashmap_size": 12,
          "system.geometry.encoding.n_levels": 4}
NERF = {"system.renderer.num_samples_per_ray": 16, "system.renderer.grid_resolution": 16, "system.renderer.grid_update_every": 2}
MESH = {"system.geometry.isosurface_resolution": 16}


def small_preset(name: str, folder, steps: int, extra: dict | None = None) -> str:
    """The preset with test-sized settings written into it (a user's edited copy)."""
    return preset_with(name, folder, {**COMMON, **(MESH if "refine" in name else NERF), "trainer.max_steps": steps,
                                      "checkpoint.every_n_train_steps": steps, **(extra or {})})


def losses_logged(trial) -> list[dict]:
    return [r for r in csv.DictReader(open(trial / "csv_logs" / "metrics.csv")) if r.get("train/loss")]


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    from lift3d.priors.world.examples import write_example

    return write_example(tmp_path_factory.mktemp("images"), "green", "house", resolution=32)


def test_bundled_coarse_then_refine_in_one_command_with_both_priors(tmp_path, house):
    out = tmp_path / "outputs"
    coarse = small_preset("magic123-coarse-bundled", tmp_path, 30)
    refine = small_preset("magic123-refine-bundled", tmp_path, 4)
    proc = launch(["--config", coarse, "--train", f"--then={refine}", f"data.image_path={house}",
                   "system.prompt_processor.prompt=a green house", f"exp_root_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = {t.parent.name: t for t in trial_dirs(out)}
    first, second = trials["magic123-coarse-bundled"], trials["magic123-refine-bundled"]
    assert f"converted {first} to a mesh geometry" in proc.stdout
    for trial, steps in ((first, 30), (second, 4)):
        rows = losses_logged(trial)
        # both priors score every step, each under its own name
        assert all(float(r["train/loss_sds"]) != 0 and float(r["train/loss_text_sds"]) != 0 for r in rows)
        assert len(list((trial / "save" / f"it{steps}-test").glob("*.png"))) == 5
    rows = losses_logged(first)
    assert float(rows[-1]["train/loss_mask"]) < 0.5 * float(rows[0]["train/loss_mask"])  # the reference pass fits the input
    state = torch.load(second / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert "geometry.sdf" in state and not any(k.startswith(("guidance.", "text_guidance.")) for k in state)  # frozen priors stay out
    proc = launch(["--config", str(second / "configs" / "parsed.yaml"), "--export", f"resume={second}", "export.texture_size=64",
                   "export.formats=[glb]"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (second / "save" / "it4-export" / "model.glb").is_file()


def test_the_baseline_loads_the_text_prior_only_and_zero123_the_view_prior_only(house):
    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.registry import find
    from lift3d.systems.base import BaseLift3DSystem

    def system(preset, *overrides):
        cfg = parse(ExperimentConfig, load_mapping(ROOT / "configs" / preset, [f"data.image_path={house}", *overrides]))
        return find(cfg.system_type, BaseLift3DSystem)(cfg.system)

    baseline = system("reference-text-bundled.yaml", "system.prompt_processor.prompt=a green house")
    assert baseline.guidance is None and baseline.text_guidance is not None
    view_only = system("magic123-coarse-bundled.yaml", "system.prompt_processor.prompt=a green house", "system.loss.lambda_text_sds=0")
    assert view_only.guidance is not None and view_only.text_guidance is None and view_only.prompt_processor is None
    both = system("magic123-coarse-bundled.yaml", "system.prompt_processor.prompt=a green house")
    assert both.guidance is not None and both.text_guidance is not None
    # the displayed render comes from whichever prior is loaded
    rgb = torch.rand(1, 8, 8, 3)
    assert torch.allclose(baseline.display(rgb), both.text_guidance.to_display(rgb))


def test_the_baseline_trains_on_the_text_prior(tmp_path, house):
    out = tmp_path / "outputs"
    preset = small_preset("reference-text-bundled", tmp_path, 4)
    proc = launch(["--config", preset, "--train", f"data.image_path={house}", "system.prompt_processor.prompt=a green house",
                   f"exp_root_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(out)
    rows = losses_logged(trial)
    assert all(float(r["train/loss_text_sds"]) != 0 for r in rows)
    assert not any(r.get("train/loss_sds") for r in rows)  # no view prior: no view-prior loss


def test_real_prior_presets_run_on_tiny_random_priors(tmp_path, house, latent_prior, latent_view_prior):
    out = tmp_path / "outputs"
    priors = [f"system.guidance.pretrained_model_name_or_path={latent_view_prior}",
              f"system.text_guidance.pretrained_model_name_or_path={latent_prior}"]
    small = {"system.geometry.radius": 1.0, "data.random_camera.batch_size": 1}
    previous = None
    for name in ("magic123-coarse-sd", "magic123-refine-sd"):
        preset = small_preset(name, tmp_path, 2, small)
        source = [f"system.geometry_convert_from={previous}"] if previous else []
        proc = launch(["--config", preset, "--train", f"data.image_path={house}", "system.prompt_processor.prompt=a red house",
                       f"exp_root_dir={out}", *priors, *source], tmp_path)  # the tiny prior's words
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        (previous,) = [t for t in trial_dirs(out) if t.parent.name == name]
        rows = losses_logged(previous)
        assert all(float(r["train/loss_sds"]) != 0 and float(r["train/loss_text_sds"]) != 0 for r in rows)
        assert len(list((previous / "save" / "it2-test").glob("*.png"))) == 5


@pytest.mark.parametrize("preset, change, message", [
    ("magic123-coarse-bundled.yaml", "system.loss.lambda_text_sds=0 system.loss.lambda_sds=0", "both priors are switched off"),
    ("magic123-coarse-bundled.yaml", "system.loss.lambda_normal_consistency=10", "a mesh regulariser, but the coarse stage has no mesh"),
    ("magic123-coarse-bundled.yaml", "system.loss.lambda_text_vsd=1", "no module produces this loss"),
    ("magic123-refine-bundled.yaml", "system.geometry_type=implicit-volume", "the refine stage optimises a mesh"),
    ("magic123-coarse-bundled.yaml", "system.text_guidance_type=vsd-guidance system.loss.lambda_text_vsd=1 system.loss.lambda_text_sds=0",
     "trains modules of its own, which magic123-system does not optimise"),
])
def test_config_errors_name_the_fix_before_any_work(preset, change, message, house):
    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.errors import ConfigError
    from lift3d.experiment import ExperimentConfig

    overrides = [f"data.image_path={house}", "system.prompt_processor.prompt=a green house", "system.geometry_convert_from=x", *change.split()]
    with pytest.raises(ConfigError, match=message), explicit_keys(override_keys(overrides)):
        parse(ExperimentConfig, load_mapping(ROOT / "configs" / preset, overrides))
