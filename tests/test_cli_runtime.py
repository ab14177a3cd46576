"""The CLI at run time: Ctrl-C, no accelerators installed, shape checks, bad resume paths."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from run_helpers import ROOT, SMALL, launch, trial_dirs

BLOCK_ACCELERATORS = "import sys\nfor _m in ('tinycudann', 'nerfacc', 'nvdiffrast'):\n    sys.modules[_m] = None\n"


def test_ctrl_c_writes_checkpoint_and_exits_cleanly(tmp_path, pixel_prior):
    out = tmp_path / "outputs"
    args = ["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train", "trainer.max_steps=100000",
            "system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={pixel_prior}",
            f"exp_root_dir={out}", *SMALL]
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("*/*/save/it2-val/001.png")):
        time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    (trial,) = trial_dirs(out)
    assert "interrupted at step" in stdout and f"resume={trial}" in stdout
    ckpt = torch.load(trial / "ckpts" / "last.ckpt", weights_only=True)
    assert 2 <= ckpt["global_step"] < 100000
    assert not list((trial / "ckpts").glob("*.tmp*"))


def test_cpu_run_without_accelerator_packages(tmp_path, pixel_prior):
    code = BLOCK_ACCELERATORS + "import lift3d, lift3d.modules\nprint('imported')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr
    out = tmp_path / "outputs"
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train", "trainer.max_steps=2", "--gpu", "cpu",
                   "system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={pixel_prior}",
                   f"exp_root_dir={out}", *SMALL], tmp_path, prelude=BLOCK_ACCELERATORS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (trial,) = trial_dirs(out)
    assert (trial / "save" / "it2-test.mp4").is_file()


def test_selecting_nerfacc_without_it_is_a_clear_error(tmp_path, pixel_prior):
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train", "system.renderer.compositing=nerfacc",
                   "system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={pixel_prior}",
                   f"exp_root_dir={tmp_path / 'out'}"], tmp_path, prelude=BLOCK_ACCELERATORS)
    assert proc.returncode == 2
    assert "needs nerfacc" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("resume, message", [("nowhere.ckpt", "no such checkpoint or trial directory"), (".", "no checkpoint in")])
def test_bad_resume_is_a_clear_error(tmp_path, resume, message):
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--test", f"resume={resume}",
                   "system.prompt_processor.prompt=a red cube", f"exp_root_dir={tmp_path / 'out'}"], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_test_without_checkpoint_is_a_clear_error(tmp_path):
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--test", "system.prompt_processor.prompt=a red cube"], tmp_path)
    assert proc.returncode == 2 and "need a checkpoint" in proc.stderr


def test_shape_annotations_are_checked():
    """The tests run with LIFT3D_TYPECHECK=1: a wrongly shaped tensor at a module boundary raises."""
    from lift3d.data.camera_math import spherical_to_position
    from lift3d.renderers.base import RenderOutput

    with pytest.raises(Exception, match="Type-check error"):
        spherical_to_position(torch.zeros(2), torch.zeros(3), torch.zeros(2))
    with pytest.raises(Exception, match="Type-check error"):
        RenderOutput(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 5, 1), torch.zeros(1, 4, 4, 1))


CHATTER = ("litlogger", "LeafSpec", "should be kept in float32", "weights_only", "GPU available", "accelerate", "Loading weights")


def test_console_holds_lift3d_output_and_library_messages_go_to_the_trial_log(tmp_path):
    """The main job's console: progress and results, no library advertisements or deprecation notices."""
    out = tmp_path / "outputs"
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-bundled.yaml"), "--train", "system.prompt_processor.prompt=a red house",
                   "trainer.max_steps=3", "trainer.val_check_interval=3", "data.n_test_views=2", "data.n_val_views=1",
                   "data.eval_resolution=16", "trainer.enable_progress_bar=false", f"exp_root_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = proc.stdout + proc.stderr
    assert [c for c in CHATTER if c in console] == [], console[-2000:]
    (trial,) = trial_dirs(out)
    assert f"outputs are in {trial.relative_to(tmp_path)}" in proc.stdout or f"outputs are in {trial}" in proc.stdout
    log = (trial / "logs" / "libraries.log").read_text()
    # what used to reach the console is kept, in the trial's log
    assert "GPU available" in log and "Trainer.fit" in log


def test_a_prior_returning_nan_stops_the_run_with_one_line(tmp_path, pixel_prior):
    """Through launch.py, as a user meets it: exit 2, one line naming the likely cause, no traceback."""
    import shutil

    from diffusers import UNet2DConditionModel

    broken = tmp_path / "broken-prior"
    shutil.copytree(pixel_prior, broken)
    unet = UNet2DConditionModel.from_pretrained(broken, subfolder="unet")
    with torch.no_grad():
        unet.conv_out.bias.fill_(float("nan"))
    unet.save_pretrained(broken / "unet")
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train", "trainer.max_steps=3",
                   "system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={broken}",
                   f"exp_root_dir={tmp_path / 'out'}", *SMALL], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the prior's noise prediction is non-finite in 100.0% of elements at step 0")
    assert "half_precision=false" in last and "Traceback" not in proc.stderr


def test_every_loss_weight_at_zero_stops_the_run_with_one_line(tmp_path, pixel_prior):
    """A run whose weights leave nothing to optimise says so, instead of autograd's "does not require grad"."""
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-if.yaml"), "--train", "trainer.max_steps=3",
                   "system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={pixel_prior}",
                   "system.loss.lambda_sds=0", "system.loss.lambda_orient=0", "system.loss.lambda_sparsity=0", f"exp_root_dir={tmp_path / 'out'}", *SMALL], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "error: every loss weight is 0 at step 0, so nothing would be optimised; set one above 0, e.g. system.loss.lambda_sds=1"
    assert "Traceback" not in proc.stderr


def test_training_metrics_are_logged_only_on_the_steps_the_logger_writes(tmp_path):
    """Lightning writes per-step metrics every ``log_every_n_steps``; lift3d skips ``self.log`` on
    the other steps (it costs time and is never written), except the progress bar's total loss."""
    import csv

    prelude = ("import atexit, collections, lightning.pytorch as pl\n_calls = collections.Counter()\n_log = pl.LightningModule.log\n"
               "def _counted(self, name, *a, **k):\n    _calls[name] += 1\n    return _log(self, name, *a, **k)\n"
               "pl.LightningModule.log = _counted\natexit.register(lambda: print('LOG CALLS', dict(_calls)))\n")
    out = tmp_path / "out"
    proc = launch(["--config", str(ROOT / "configs/dreamfusion-bundled.yaml"), "--train", "trainer.max_steps=6", "trainer.log_every_n_steps=3",
                   "system.prompt_processor.prompt=a red cube", f"exp_root_dir={out}", *SMALL], tmp_path, prelude=prelude)
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = eval(proc.stdout.split("LOG CALLS", 1)[1].strip().splitlines()[0])
    assert calls["train/loss"] == 6  # the progress bar's, every step
    assert calls["train/loss_sds"] == 2 and calls["train/grad_norm"] == 2  # steps 2 and 5 only
    (trial,) = trial_dirs(out)
    rows = [r for r in csv.DictReader(open(trial / "csv_logs" / "metrics.csv")) if r.get("train/loss_sds")]
    assert [int(r["step"]) for r in rows] == [2, 5]
    assert all(r["train/grad_norm"] and r["train/samples_per_ray_evaluated_fraction"] for r in rows)
