"""Image-to-3D: the input image, its data module, the relative camera, zero123 guidance and system, scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lift3d.config import load_mapping, parse
from lift3d.data.random_camera import RandomCameraConfig
from lift3d.data.reference_image import load_reference_image
from lift3d.data.single_image import SingleImageConfig, SingleImageDataModule, reference_camera
from lift3d.errors import ConfigError
from lift3d.guidance.relative_camera import relative_camera_features
from lift3d.priors.world.examples import example_truth, read_truth, write_example
from run_helpers import ROOT
from tiny_priors import build_latent_view_prior


def save(path, array):
    Image.fromarray((np.asarray(array) * 255).round().astype(np.uint8)).save(path)
    return path


def square_on(background, size=32, box=(8, 20, 10, 22), colour=(0.9, 0.1, 0.1)):
    img = np.ones((size, size, 3), dtype=np.float32) * np.asarray(background, dtype=np.float32)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = colour
    return img


# ---- the input image ----------------------------------------------------------------------------

def test_keyed_foreground_and_background_colour(tmp_path):
    path = save(tmp_path / "in.png", square_on((0.2, 0.5, 0.8)))
    ref = load_reference_image(path, 32, recentre_object=False, border_ratio=0.2, where="data.image_path")
    torch.testing.assert_close(ref.background, torch.tensor([0.2, 0.5, 0.8]), atol=1 / 255, rtol=0)
    assert ref.mask.shape == (32, 32, 1) and ref.mask.sum() == 12 * 12
    assert ref.mask[8:20, 10:22].min() == 1 and ref.mask[:8].max() == 0


def test_alpha_foreground_puts_the_object_on_white(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.float32)
    rgba[..., :3] = 0.3  # colour under transparent pixels must not leak
    rgba[4:12, 4:12] = (0.1, 0.9, 0.1, 1.0)
    path = save(tmp_path / "in.png", rgba)
    ref = load_reference_image(path, 32, recentre_object=False, border_ratio=0.2, where="data.image_path")
    assert torch.equal(ref.background, torch.ones(3))
    assert ref.mask.sum() == 64
    torch.testing.assert_close(ref.rgb[0, 0], torch.ones(3))
    torch.testing.assert_close(ref.rgb[6, 6], torch.tensor([0.1, 0.9, 0.1]), atol=1 / 255, rtol=0)


def test_recentring_centres_the_object_and_keeps_the_border_ratio(tmp_path):
    path = save(tmp_path / "in.png", square_on((1.0, 1.0, 1.0), size=64, box=(2, 22, 30, 50)))  # 20 px, off-centre
    ref = load_reference_image(path, 40, recentre_object=True, border_ratio=0.25, where="data.image_path")
    ys, xs = torch.nonzero(ref.mask[..., 0] > 0.5, as_tuple=True)
    assert abs(float(ys.float().mean()) - 19.5) < 1 and abs(float(xs.float().mean()) - 19.5) < 1
    assert abs((int(ys.max()) - int(ys.min()) + 1) / 40 - 0.5) < 0.06  # the box fills 1 - 2 * 0.25 of the side


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("not an image"), p)[1], "is not an image"),
        (lambda p: save(p, np.full((32, 32, 3), 0.5)), "no foreground found"),
        (lambda p: save(p, np.random.default_rng(0).random((32, 32, 3))), "not one uniform colour"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, make, message):
    path = make(tmp_path / "in.png")
    with pytest.raises(ConfigError, match=message) as info:
        load_reference_image(path, 32, recentre_object=False, border_ratio=0.2, where="data.image_path")
    assert "\n" not in str(info.value) and str(info.value).startswith("data.image_path: ")


def test_all_foreground_is_an_error(tmp_path):
    rgba = np.ones((32, 32, 4), dtype=np.float32)
    rgba[0, 0, 3] = 0.0  # one transparent pixel: alpha is used, and everything else is object
    path = save(tmp_path / "in.png", rgba)
    with pytest.raises(ConfigError, match="foreground almost everywhere"):
        load_reference_image(path, 32, recentre_object=False, border_ratio=0.2, where="data.image_path")


def test_config_parse_reads_the_image_before_any_work(tmp_path):
    mapping = load_mapping(ROOT / "configs" / "zero123-bundled.yaml", [f"data.image_path={tmp_path / 'missing.png'}"])
    from lift3d.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match="data.image_path: .*missing.png does not exist"):
        parse(ExperimentConfig, mapping)


# ---- the data module -----------------------------------------------------------------------------

def data_config(image, **kw) -> SingleImageConfig:
    random = RandomCameraConfig(batch_size=[[0, 3], [5, 1]], resolution=[[0, 8], [5, 16]], resolution_schedule="milestones",
                                eval_resolution=16, eval_elevation=15.0, eval_camera_distance=2.5, eval_fovy=45.0, n_test_views=8)
    return SingleImageConfig(image_path=str(image), reference_resolution=[[0, 16], [5, 32]], recentre=False, elevation_deg=15.0,
                             azimuth_deg=30.0, camera_distance=2.5, fovy_deg=45.0, random_camera=random, **kw)


def test_batches_hold_the_reference_view_and_random_views_with_milestones(tmp_path):
    image = write_example(tmp_path, "green", "house", resolution=64)
    dm = SingleImageDataModule(data_config(image))
    early, late = dm.train_dataset.sample(0), dm.train_dataset.sample(5)
    assert early.reference_rgb.shape == (1, 16, 16, 3) and late.reference_rgb.shape == (1, 32, 32, 3)
    assert early.random.size == 3 and early.random.height == 8 and late.random.size == 1 and late.random.height == 16
    assert float(early.reference.azimuth[0]) == 30.0 and float(early.reference.distance[0]) == 2.5
    torch.testing.assert_close(dm.background, torch.tensor(read_truth(image).background), atol=1 / 255, rtol=0)
    # the same step gives the same batch (resume)
    assert torch.equal(dm.train_dataset.sample(3).random.azimuth, dm.train_dataset.sample(3).random.azimuth)


def test_the_orbit_starts_at_the_reference_camera(tmp_path):
    image = write_example(tmp_path, "green", "house", resolution=64)
    cfg = data_config(image)
    dm = SingleImageDataModule(cfg)
    first, ref = dm.test_dataset[0], reference_camera(cfg, 16)
    torch.testing.assert_close(first.c2w, ref.c2w)
    assert float(dm.test_dataset[2].azimuth[0]) == pytest.approx(30.0 + 90.0)


def test_the_reference_camera_sees_the_example_as_it_was_rendered(tmp_path):
    """The bundled preset's camera and the example's sidecar agree: a render from the sidecar's
    camera is the input image itself."""
    from lift3d.priors.world.render import render_objects

    image = write_example(tmp_path, "blue", "snowman", resolution=32)
    truth = read_truth(image)
    cfg = parse(SingleImageConfig, load_mapping(ROOT / "configs" / "zero123-bundled.yaml", [f"data.image_path={image}"])["data"])
    assert (cfg.elevation_deg, cfg.azimuth_deg, cfg.camera_distance, cfg.fovy_deg) == (
        truth.elevation_deg, truth.azimuth_deg, truth.camera_distance, truth.fovy_deg)
    ref = load_reference_image(image, 32, cfg.recentre, cfg.border_ratio, "data.image_path")
    again = render_objects([truth.kind], [truth.colour], truth.view(), resolution=32)
    torch.testing.assert_close(ref.rgb, again.rgb[0], atol=1 / 255, rtol=0)
    assert truth == example_truth("blue", "snowman") and truth.held_out


# ---- the relative camera -------------------------------------------------------------------------

def test_relative_camera_conventions():
    ref = (torch.tensor([10.0]), torch.tensor([20.0]), torch.tensor([3.0]))
    tgt = (torch.tensor([40.0]), torch.tensor([110.0]), torch.tensor([3.5]))
    lift3d = relative_camera_features("lift3d", *ref, *tgt)
    zero123 = relative_camera_features("zero123", *ref, *tgt)
    stable = relative_camera_features("stable-zero123", *ref, *tgt)
    d = math.radians(30.0)
    torch.testing.assert_close(lift3d, torch.tensor([[d, 1.0, 0.0, 0.5]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(zero123, torch.tensor([[-d, 1.0, 0.0, 0.5]]), atol=1e-6, rtol=0)  # Δpolar = −Δelevation
    torch.testing.assert_close(stable, torch.tensor([[-d, 1.0, 0.0, math.radians(80.0)]]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown camera convention"):
        relative_camera_features("zero-123", *ref, *tgt)


# ---- zero123 guidance ----------------------------------------------------------------------------

def make_guidance(prior_path, **kw):
    from lift3d.guidance.zero123 import Zero123Guidance

    return Zero123Guidance(Zero123Guidance.Config(pretrained_model_name_or_path=str(prior_path), **kw))


def cameras(elevation, azimuth, distance=2.5, resolution=16):
    from lift3d.data.random_camera import make_batch

    b = len(elevation)
    return make_batch(torch.tensor(elevation), torch.tensor(azimuth), torch.full((b,), distance), torch.full((b,), 45.0),
                      torch.zeros(b, 3), resolution)


@pytest.mark.parametrize("latent", [False, True])
def test_zero123_sds_gradient_is_the_weighted_noise_residual_of_the_view_prior(tmp_path, latent):
    from lift3d.guidance.sds import sds_weight

    path = build_latent_view_prior(tmp_path / "zero123") if latent else "bundled:view"
    guidance = make_guidance(path, guidance_scale=2.0, camera_convention="zero123" if latent else "auto")
    size = guidance.prior.image_size
    reference = torch.rand(1, size, size, 3)
    guidance.set_reference(reference, cameras([15.0], [0.0], resolution=size))
    views = cameras([20.0, 5.0], [90.0, -150.0], resolution=size)
    rgb = torch.rand(2, size, size, 3, requires_grad=True)
    x = guidance.encode(rgb.detach()) if not latent else None
    t = torch.tensor([300, 700])
    torch.manual_seed(1)
    noise = torch.randn(2, guidance.prior.unet.config.out_channels, guidance.prior.unet.config.sample_size, guidance.prior.unet.config.sample_size)
    out = guidance(rgb, views, t=t, noise=noise)
    out.losses["sds"].backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    if latent:
        return  # the VAE sample is random; the pixel case checks the arithmetic
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    cam = relative_camera_features("lift3d", torch.full((2,), 15.0), torch.zeros(2), torch.full((2,), 2.5), views.elevation, views.azimuth, views.distance)
    with torch.no_grad():
        context, concat = guidance.prior.conditioning(reference.permute(0, 3, 1, 2).expand(2, -1, -1, -1), cam)
        eps_hat = guidance.prior.predict_noise(a.sqrt() * x + (1 - a).sqrt() * noise, t, context, concat, 2.0)
    expected = sds_weight("sds", a) * (eps_hat - noise) / 2  # loss = sum(g * x) / B
    x_req = x.clone().requires_grad_(True)
    guidance(((x_req + 1) / 2).permute(0, 2, 3, 1), views, t=t, noise=noise).losses["sds"].backward()
    torch.testing.assert_close(x_req.grad, expected, atol=1e-5, rtol=1e-4)


def test_zero123_guidance_depends_on_the_camera_and_the_reference(tmp_path):
    guidance = make_guidance("bundled:view", guidance_scale=1.0)
    ref_a, ref_b = torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)
    rgb, t, noise = torch.rand(1, 32, 32, 3), torch.tensor([500]), torch.randn(1, 3, 32, 32)

    def grad(reference, azimuth):
        guidance.set_reference(reference, cameras([15.0], [0.0], resolution=32))
        return guidance(rgb, cameras([15.0], [azimuth], resolution=32), t=t, noise=noise).info["grad_norm"]

    assert grad(ref_a, 90.0) != grad(ref_a, -90.0)
    assert grad(ref_a, 90.0) != grad(ref_b, 90.0)


def test_zero123_guidance_needs_its_reference_first():
    guidance = make_guidance("bundled:view")
    with pytest.raises(RuntimeError, match="set_reference"):
        guidance(torch.rand(1, 32, 32, 3), cameras([15.0], [0.0], resolution=32))


# ---- scoring -------------------------------------------------------------------------------------

def test_image_to_3d_scores_reward_the_truth_and_punish_a_wrong_object():
    from lift3d.eval.image_to_3d import ground_truth_views, score_turntable
    from lift3d.eval.turntable import Turntable
    from lift3d.priors.world.render import render_objects

    truth = example_truth("green", "house")
    n = 12
    az = torch.arange(n) * 30.0
    view = truth.view()
    blank = Turntable(rgb=torch.zeros(n, 3, 32, 32), opacity=torch.zeros(n, 32, 32), elevation=view.elevation.expand(n),
                      azimuth=az, distance=view.distance.expand(n), fovy=view.fovy.expand(n), light_position=torch.zeros(n, 3))
    gt = ground_truth_views(truth, blank)
    perfect = Turntable(**{**blank.__dict__, "rgb": gt.rgb.permute(0, 3, 1, 2), "opacity": gt.mask.float()})
    wrong = render_objects(["sphere"] * n, ["green"] * n, gt_view(truth, az), resolution=32)
    sphere = Turntable(**{**blank.__dict__, "rgb": wrong.rgb.permute(0, 3, 1, 2), "opacity": wrong.mask.float()})
    s_perfect, s_sphere = score_turntable(perfect, truth), score_turntable(sphere, truth)
    assert s_perfect["silhouette_iou"] == 1.0 and s_perfect["janus"] == 0.0 and s_perfect["ssim"] == pytest.approx(1.0)
    assert s_sphere["silhouette_iou"] < 0.8 and s_sphere["psnr"] < 25 and s_sphere["ssim"] < 0.95
    # a house whose front (door) is pasted on its back: the Janus failure
    janus_rgb = perfect.rgb.clone()
    janus_rgb[6] = perfect.rgb[0]  # the view at 180 degrees shows the front
    janus = Turntable(**{**perfect.__dict__, "rgb": janus_rgb, "opacity": perfect.opacity.clone()})
    janus.opacity[6] = perfect.opacity[0]
    assert score_turntable(janus, truth)["janus"] > 0


def test_the_benchmark_picture_is_the_input_then_every_tenth_turntable_frame(tmp_path, monkeypatch):
    import imageio.v3 as iio

    from lift3d.eval import image_to_3d
    from lift3d.eval.turntable import Turntable

    n, h = 60, 16
    shade = torch.arange(n, dtype=torch.float32) / n  # frame i is grey level i / 60
    tt = Turntable(rgb=shade.view(n, 1, 1, 1).expand(n, 3, h, h).clone(), opacity=torch.ones(n, h, h), elevation=torch.zeros(n),
                   azimuth=torch.zeros(n), distance=torch.ones(n), fovy=torch.ones(n), light_position=torch.zeros(n, 3))
    monkeypatch.setattr(image_to_3d, "load_turntable", lambda trial: tt)
    iio.imwrite(tmp_path / "a_red_cube.png", np.full((64, 64, 3), (255, 0, 0), np.uint8))
    rows = [{"image": "a_red_cube", "baseline": False, "trial": "t"}, {"image": "a_red_cube", "baseline": True, "trial": "t"},
            {"image": "a_red_cube", "baseline": False, "error": "exit 1"}]
    image_to_3d.picture(rows, tmp_path, tmp_path / "pic.png")
    pic = iio.imread(tmp_path / "pic.png")
    assert pic.shape == (h, 7 * h + 4, 3)  # one row: the baseline and the failed run are left out
    assert (pic[:, :h] == (255, 0, 0)).all()  # the input, resized
    for k in range(6):
        panel = pic[:, h + 4 + k * h: h + 4 + (k + 1) * h]
        assert np.abs(panel.astype(float) - 255 * float(shade[10 * k])).max() <= 1


def gt_view(truth, az):
    from lift3d.priors.world.render import WorldView

    n = len(az)
    v = truth.view()
    return WorldView(elevation=v.elevation.expand(n), azimuth=az, distance=v.distance.expand(n), fovy=v.fovy.expand(n),
                     light_position=v.light_position.expand(n, 3), background=v.background.expand(n, 3), unlit=torch.zeros(n, dtype=torch.bool))


# ---- the zero123 system's regularisers ------------------------------------------------------------

def test_normal_image_smoothness_is_zero_only_for_a_flat_normal_image():
    from lift3d.systems.zero123 import normal_image_smoothness

    flat = torch.nn.functional.normalize(torch.ones(2, 8, 8, 3), dim=-1)
    assert normal_image_smoothness(flat) == 0
    bumpy = flat.clone()
    bumpy[:, 4, 4] = torch.tensor([1.0, 0.0, 0.0])
    assert normal_image_smoothness(bumpy) > 0
    # an edge in x and one in y cost the same
    edge_x, edge_y = flat.clone(), flat.clone()
    edge_x[:, :, 4:] = torch.tensor([0.0, 0.0, 1.0])
    edge_y[:, 4:, :] = torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(normal_image_smoothness(edge_x), normal_image_smoothness(edge_y))


def test_surface_normal_smoothness_prefers_a_smooth_surface(tmp_path):
    """On the blob (a sphere: normals change slowly) the 3-D normal smoothness is small; the same
    blob with a high-frequency density added scores worse, and the loss reaches the geometry."""
    from lift3d.config import load_mapping, parse
    from lift3d.systems.zero123 import Zero123System

    image = write_example(tmp_path, "green", "house", resolution=32)
    mapping = load_mapping(ROOT / "configs" / "zero123-bundled.yaml", [f"data.image_path={image}", "system.normal_smooth_perturb=0.02"])
    cfg = parse(Zero123System.Config, mapping["system"], "system")
    torch.manual_seed(0)
    system = Zero123System(cfg)
    with torch.no_grad():
        system.geometry.density_network[-1].weight.zero_()
        system.geometry.density_network[-1].bias.zero_()
    views = cameras([15.0, 30.0], [0.0, 120.0], resolution=24)
    out = system.renderer(views)
    smooth = system.surface_normal_smoothness(views, out)
    with torch.no_grad():
        system.geometry.density_network[-1].weight.normal_(0, 3.0)  # hash-grid noise on the density
        system.geometry.encoding.table.normal_(0, 1.0)
    out = system.renderer(views)
    rough = system.surface_normal_smoothness(views, out)
    assert smooth < 0.05 and rough > 2 * smooth
    rough.backward()
    assert system.geometry.encoding.table.grad is not None and system.geometry.encoding.table.grad.abs().sum() > 0


# ---- the optional depth of the input ------------------------------------------------------------

def test_pearson_is_one_for_an_increasing_affine_map_and_minus_one_for_a_decreasing_one():
    from lift3d.systems.zero123 import pearson

    x = torch.rand(100)
    assert pearson(3 * x + 2, x).item() == pytest.approx(1.0, abs=1e-5)
    assert pearson(-x, x).item() == pytest.approx(-1.0, abs=1e-5)
    assert abs(pearson(torch.rand(10000), torch.rand(10000)).item()) < 0.05


def test_the_depth_map_is_recentred_and_resized_with_the_image(tmp_path):
    from lift3d.priors.world.examples import depth_path_of

    image = write_example(tmp_path, "red", "house", resolution=64)
    ref = load_reference_image(image, 32, recentre_object=True, border_ratio=0.2, where="data.image_path", depth_path=depth_path_of(image))
    inside, outside = ref.mask[..., 0] > 0.99, ref.mask[..., 0] < 0.01
    assert ref.depth.shape == (32, 32, 1)
    # the true ray distance of the house from 2.5 units away, in millimetres; nothing off the object
    assert ((ref.depth[..., 0][inside] > 1500) & (ref.depth[..., 0][inside] < 3500)).all()
    assert ref.depth[..., 0][outside].abs().max() < 0.01 * 2500  # only the resize's blur of the edge


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "none.npy", "does not exist"),
    (lambda p: (np.save(p / "small.npy", np.ones((8, 8))), p / "small.npy")[1], "depth map is 8x8 but the image is 32x32"),
    (lambda p: (np.save(p / "nan.npy", np.full((32, 32), np.nan)), p / "nan.npy")[1], "NaN"),
])
def test_bad_depth_maps_are_one_line_errors(tmp_path, make, message):
    image = save(tmp_path / "in.png", square_on((1.0, 1.0, 1.0)))
    with pytest.raises(ConfigError, match=message) as info:
        load_reference_image(image, 16, True, 0.2, "data.image_path", depth_path=make(tmp_path))
    assert "data.depth_path" in str(info.value) and "\n" not in str(info.value)


def test_the_depth_loss_pulls_the_render_depth_to_the_input_depth(tmp_path):
    import csv

    from lift3d.priors.world.examples import depth_path_of
    from run_helpers import launch, trial_dirs
    from test_presets_end_to_end import SMALL_IMAGE

    image = write_example(tmp_path / "images", "green", "house", resolution=32)
    out = tmp_path / "outputs"
    base = ["--config", str(ROOT / "configs" / "zero123-bundled.yaml"), "--train", f"exp_root_dir={out}", f"data.image_path={image}",
            "system.loss.lambda_depth=50", *SMALL_IMAGE]
    proc = launch([*base, "trainer.max_steps=2"], tmp_path)
    assert proc.returncode != 0 and "lambda_depth > 0 needs a depth map of the input: set data.depth_path" in proc.stderr
    assert not out.exists()
    # at a constant rate: the preset's decay, spread over a 60-step run, would slow the fit it measures
    proc = launch([*base, f"data.depth_path={depth_path_of(image)}", "trainer.max_steps=60", "system.optimizer.lr_decay=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(out)
    rows = [r for r in csv.DictReader(open(trial / "csv_logs" / "metrics.csv")) if r.get("train/loss_depth")]
    first, last = float(rows[0]["train/loss_depth"]), float(rows[-1]["train/loss_depth"])
    assert 0 <= last < 0.3 * first, (first, last)  # about 1.6 at the start (the blob), 0.26 at step 60
