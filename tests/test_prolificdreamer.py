"""ProlificDreamer: the three bundled stages chained by one command, LoRA checkpoints and exact resume,
the Stable-Diffusion presets on a tiny random prior, stage errors."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from run_helpers import ROOT, SMALL, launch, preset_with, trial_dirs

STAGES = ("prolificdreamer-bundled", "prolificdreamer-geometry-bundled", "prolificdreamer-texture-bundled")
COMMON = {"data.resolution": 16, "data.eval_resolution": 16, "data.n_test_views": 5, "data.n_val_views": 2, "data.batch_size": 2,
          "trainer.val_check_interval": 2, "trainer.enable_progress_bar": False, "checkpoint.every_n_train_steps": 2,
          "trainer.max_steps": 4, "system.geometry.encoding.log2_hashmap_size": 12, "system.geometry.encoding.n_levels": 4}
NERF = {"system.renderer.num_samples_per_ray": 16, "system.renderer.grid_resolution": 16, "system.renderer.grid_update_every": 2,
        "system.material.ambient_only_steps": 1}
MESH = {"system.geometry.isosurface_resolution": 16}


def small_preset(name: str, folder) -> str:
    """The preset with test-sized settings written into it (a user's edited copy of it)."""
    return preset_with(name, folder, {**COMMON, **(MESH if "geometry" in name or "texture" in name else NERF)})


def test_three_bundled_stages_in_one_command_then_export(tmp_path):
    out = tmp_path / "outputs"
    first, *rest = [small_preset(n, tmp_path) for n in STAGES]
    proc = launch(["--config", first, "--train", *(f"--then={c}" for c in rest), "system.prompt_processor.prompt=a white snowman",
                   f"exp_root_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = {t.parent.name: t for t in trial_dirs(out)}
    assert set(trials) == set(STAGES)
    coarse, geometry, texture = (trials[n] for n in STAGES)
    assert f"converted {coarse} to a mesh geometry" in proc.stdout
    assert f"copied the mesh geometry of {geometry}" in proc.stdout and "texture inherited" in proc.stdout
    for trial in (coarse, geometry, texture):
        assert len(list((trial / "save" / "it4-test").glob("*.png"))) == 5
    # each stage's source is recorded in its config, so the stage is rerun or resumed as it was
    assert yaml.safe_load((texture / "configs" / "parsed.yaml").read_text())["system"]["geometry_convert_from"] == str(geometry)

    g = torch.load(geometry / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    t = torch.load(texture / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    # the texture stage kept the geometry stage's mesh and trained its colour field and its own LoRA
    assert torch.equal(g["geometry.sdf"], t["geometry.sdf"]) and torch.equal(g["geometry.deformation"], t["geometry.deformation"])
    colour_field = [k for k in t if k.startswith(("geometry.feature_network.", "geometry.encoding."))]
    assert colour_field and any(not torch.equal(g[k], t[k]) for k in colour_field)
    lora = [k for k in t if k.startswith("guidance.")]
    assert lora and all(k.startswith(("guidance.lora.layers.", "guidance.lora.camera.")) for k in lora)
    assert not any(k.startswith("guidance.") for k in g)  # stage 2 is SDS: no trainable guidance

    proc = launch(["--config", str(texture / "configs" / "parsed.yaml"), "--export", f"resume={texture}", "export.texture_size=64",
                   "export.formats=[glb]"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((texture / "save" / "it4-export" / "export.json").read_text())
    assert report["surface"]["rule"] == "mesh" and (texture / "save" / "it4-export" / "model.glb").is_file()


def test_a_vsd_run_resumed_ends_as_a_straight_one(tmp_path):
    """4 steps + resume to 6 equals 6 straight: scene, LoRA, camera MLP, optimizer and RNG state (one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = str(ROOT / "configs" / "prolificdreamer-bundled.yaml")
    common = ["system.prompt_processor.prompt=a red cube", *SMALL, "trainer.val_check_interval=100"]
    a = launch(["--config", cfg, "--train", "trainer.max_steps=6", f"exp_root_dir={tmp_path / 'a'}", *common], tmp_path, env=env)
    assert a.returncode == 0, a.stderr[-2000:]
    b = launch(["--config", cfg, "--train", "trainer.max_steps=4", f"exp_root_dir={tmp_path / 'b'}", *common], tmp_path, env=env)
    assert b.returncode == 0, b.stderr[-2000:]
    (trial_b,) = trial_dirs(tmp_path / "b")
    b2 = launch(["--config", str(trial_b / "configs" / "parsed.yaml"), "--train", f"resume={trial_b}", "trainer.max_steps=6"],
                tmp_path, env=env)
    assert b2.returncode == 0, b2.stderr[-2000:]
    (trial_a,) = trial_dirs(tmp_path / "a")
    sa = torch.load(trial_a / "ckpts" / "last.ckpt", weights_only=True)["state_dict"]
    sb = torch.load(trial_b / "ckpts" / "last.ckpt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    lora = [k for k in sa if k.startswith("guidance.lora.")]
    assert len(lora) > 2
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    # the LoRA trained (its B matrices start at zero)
    assert any(sa[k].abs().sum() > 0 for k in lora if k.endswith("__B.weight"))
    # nothing of the frozen prior is in the checkpoint: the LoRA and camera MLP are a small fraction of the UNet
    n_guidance = sum(sa[k].numel() for k in lora)
    assert 0 < n_guidance < 100_000


def test_stable_diffusion_presets_run_on_a_tiny_prior(tmp_path, latent_prior):
    out = tmp_path / "outputs"
    prior = f"system.guidance.pretrained_model_name_or_path={latent_prior}"
    prompt = "system.prompt_processor.prompt=a red cube"
    small = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in COMMON.items() if k != "trainer.max_steps"]
    nerf = [f"{k}={v}" for k, v in NERF.items() if "material" not in k] + ["trainer.max_steps=2", "system.geometry.radius=1.0"]
    mesh = [f"{k}={v}" for k, v in MESH.items()] + ["trainer.max_steps=2"]
    previous = None
    for name, extra in (("prolificdreamer-sd", nerf), ("prolificdreamer-geometry-sd", mesh), ("prolificdreamer-texture-sd", mesh)):
        source = [f"system.geometry_convert_from={previous}"] if previous else []
        proc = launch(["--config", str(ROOT / "configs" / f"{name}.yaml"), "--train", prompt, prior, f"exp_root_dir={out}", *small,
                       *extra, *source], tmp_path)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        (previous,) = [t for t in trial_dirs(out) if t.parent.name == name]
        assert len(list((previous / "save" / "it2-test").glob("*.png"))) == 5
    state = torch.load(previous / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("guidance.lora.camera.") for k in state)


@pytest.mark.parametrize("change, message", [
    ("system.geometry.fix_geometry=false", "the texture stage keeps the geometry stage's mesh"),
    ("system.stage=coarse", "the coarse stage optimises a NeRF"),
    ("system.optimizer.param_lrs.guidance.lora_typo=0.1", "param_lrs.guidance.lora_typo: matches no trainable parameter"),
])
def test_stage_errors_are_found_when_the_config_is_parsed(change, message):
    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.errors import ConfigError
    from lift3d.experiment import ExperimentConfig

    overrides = ["system.prompt_processor.prompt=a cube", "system.geometry_convert_from=x", change]
    with pytest.raises(ConfigError, match=message), explicit_keys(override_keys(overrides)):
        parse(ExperimentConfig, load_mapping(ROOT / "configs" / "prolificdreamer-texture-bundled.yaml", overrides))


def test_a_bad_later_stage_stops_the_chain_before_the_first_run(tmp_path):
    out = tmp_path / "outputs"
    proc = launch(["--config", str(ROOT / "configs" / "prolificdreamer-bundled.yaml"), "--train",
                   f"--then={ROOT / 'configs' / 'magic3d-coarse-bundled.yaml'}", "system.prompt_processor.prompt=a cube",
                   f"exp_root_dir={out}"], tmp_path)
    assert proc.returncode == 2
    assert "--then" in proc.stderr and "magic3d-coarse-bundled.yaml" in proc.stderr and "geometry_convert_from" in proc.stderr
    assert not out.exists()
