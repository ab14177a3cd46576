"""A short version of the main job on the bundled prior moves the result toward the caption."""

import imageio.v3 as iio
import numpy as np

from run_helpers import ROOT, launch, trial_dirs


def test_bundled_prior_colours_the_object_as_the_caption_says(tmp_path):
    out = tmp_path / "outputs"
    proc = launch(
        ["--config", str(ROOT / "configs/dreamfusion-bundled.yaml"), "--train", "system.prompt_processor.prompt=a blue sphere",
         f"exp_root_dir={out}", "trainer.max_steps=60", "trainer.val_check_interval=1000", "trainer.enable_progress_bar=false",
         "data.batch_size=2", "data.eval_resolution=32", "data.n_test_views=6", "system.renderer.num_samples_per_ray=32",
         "system.material.ambient_only_steps=20"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(out)
    frames = sorted((trial / "save" / "it60-test").glob("*.png"))
    assert len(frames) == 6
    colours = []
    for f in frames:
        img = iio.imread(f).astype(np.float32) / 255  # rgb | normal | opacity, 32 px each
        rgb, opacity = img[:, :32], img[:, 64:96, 0]
        fg = opacity > 0.5
        assert fg.sum() > 20  # an object is there
        colours.append(rgb[fg].mean(0))
    r, g, b = np.mean(colours, axis=0)
    # the initial blob is grey (albedo 0.5 everywhere); the caption asks for blue
    assert b > max(r, g) + 0.2, (r, g, b)
