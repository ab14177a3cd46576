"""The optimizer's learning-rate decay: the factor law, config errors, and a run that ends at the final rate."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from lift3d.errors import ConfigError
from lift3d.systems.optim import OptimizerConfig, lr_factor
from run_helpers import ROOT, SMALL, launch, trial_dirs


def test_cosine_and_exponential_decay_run_from_one_to_the_final_fraction_after_the_start():
    cos = OptimizerConfig(lr_decay="cosine", final_lr_fraction=0.1, lr_decay_start=100)
    exp = OptimizerConfig(lr_decay="exponential", final_lr_fraction=0.01, lr_decay_start=100)
    for cfg in (cos, exp):
        assert lr_factor(cfg, 0, 300) == lr_factor(cfg, 100, 300) == 1.0  # constant before the start
        assert lr_factor(cfg, 300, 300) == pytest.approx(cfg.final_lr_fraction)
        assert lr_factor(cfg, 400, 300) == pytest.approx(cfg.final_lr_fraction)  # held after the end (resumed longer)
        factors = [lr_factor(cfg, s, 300) for s in range(100, 301)]
        assert all(a > b for a, b in zip(factors, factors[1:]))  # strictly falling
    assert lr_factor(cos, 200, 300) == pytest.approx(0.55)  # halfway: the mean of 1 and 0.1
    assert lr_factor(exp, 200, 300) == pytest.approx(math.sqrt(0.01))  # halfway: the geometric mean
    assert lr_factor(OptimizerConfig(), 250, 300) == 1.0


@pytest.mark.parametrize("kwargs,message", [({"final_lr_fraction": 0.0}, "final_lr_fraction"),
                                            ({"final_lr_fraction": 1.5}, "final_lr_fraction"),
                                            ({"lr_decay_start": -1}, "lr_decay_start")])
def test_bad_decay_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OptimizerConfig(lr_decay="cosine", **kwargs)


def test_a_run_with_decay_ends_with_every_group_at_the_final_fraction_of_its_rate(tmp_path):
    out = tmp_path / "out"
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-bundled.yaml"), "--train", "trainer.max_steps=6",
                   "system.prompt_processor.prompt=a red cube", f"exp_root_dir={out}", *SMALL,
                   "system.optimizer.lr_decay=exponential", "system.optimizer.final_lr_fraction=0.05"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (trial,) = trial_dirs(out)
    ckpt = torch.load(trial / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    optim = yaml.safe_load(open(trial / "configs" / "parsed.yaml"))["system"]["optimizer"]
    configured = [optim["lr"], *optim["param_lrs"].values()]
    for group in groups:  # each at 0.05 of one configured rate after the last of 6 steps
        assert any(group["lr"] == pytest.approx(0.05 * rate, rel=1e-6) for rate in configured), group["lr"]
    for rate in optim["param_lrs"].values():  # and every per-module rate has its group
        assert any(group["lr"] == pytest.approx(0.05 * rate, rel=1e-6) for group in groups), rate
    assert len(ckpt["lr_schedulers"]) == 1 and ckpt["lr_schedulers"][0]["last_epoch"] == 6
