"""Camera-conditioned text priors: the ray map, SDS and SJC passing it, and training one from a plain prior."""

import math

import pytest
import torch

from lift3d.data.random_camera import make_batch
from lift3d.errors import PriorError
from lift3d.guidance.sds import DiffusersSDSGuidance
from lift3d.priors.text_prior.camera import RAYMAP_CHANNELS, camera_raymap, is_camera_conditioned, spherical_raymap
from lift3d.prompts.diffusers_prompt_processor import DiffusersPromptProcessor


def _rotate_z(v: torch.Tensor, degrees: float) -> torch.Tensor:
    """(B, 3, H, W) vectors turned about +z."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x, y, z = v.unbind(1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=1)


def test_the_raymap_is_the_renderers_rays_as_plucker_coordinates():
    el, az = torch.tensor([0.0, 15.0, 60.0]), torch.tensor([10.0, -100.0, 170.0])
    dist, fovy = torch.tensor([2.2, 2.5, 2.8]), torch.tensor([40.0, 45.0, 50.0])
    for res in (8, 32):
        batch = make_batch(el, az, dist, fovy, torch.ones(3, 3), res)
        ray = camera_raymap(batch.c2w, batch.fovy, res)
        assert ray.shape == (3, RAYMAP_CHANNELS, res, res)
        torch.testing.assert_close(ray[:, :3].permute(0, 2, 3, 1), batch.rays_d)
        torch.testing.assert_close(ray[:, 3:].permute(0, 2, 3, 1), torch.cross(batch.rays_o, batch.rays_d, dim=-1))
        torch.testing.assert_close(spherical_raymap(el, az, dist, fovy, res), ray)
    # the moment is the same for every point of the line: the map says which line, not where on it
    d, m = ray[:, :3], ray[:, 3:]
    o = batch.rays_o.permute(0, 3, 1, 2)
    torch.testing.assert_close(torch.cross(o + 0.7 * d, d, dim=1), m)


def test_a_quarter_turn_of_the_camera_turns_its_raymap_and_nothing_else():
    el, dist, fovy = torch.tensor([20.0]), torch.tensor([2.5]), torch.tensor([45.0])
    a = spherical_raymap(el, torch.tensor([30.0]), dist, fovy, 16)
    b = spherical_raymap(el, torch.tensor([120.0]), dist, fovy, 16)
    torch.testing.assert_close(b[:, :3], _rotate_z(a[:, :3], 90.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(b[:, 3:], _rotate_z(a[:, 3:], 90.0), atol=1e-5, rtol=0)
    assert (b - a).abs().amax() > 0.5


def test_the_text_prior_is_not_camera_conditioned_and_a_marked_prior_is(pixel_prior, camera_pixel_prior, tmp_path):
    from lift3d.priors import BUNDLED

    assert not is_camera_conditioned(BUNDLED["text"]) and not is_camera_conditioned(pixel_prior)
    assert is_camera_conditioned(camera_pixel_prior)
    assert not is_camera_conditioned(tmp_path)  # no model_index.json


def _guidance(prior, cls=DiffusersSDSGuidance, **kw):
    # float32 traces: compared below with the eager float32 UNet
    guidance = cls(cls.Config(pretrained_model_name_or_path=str(prior), guidance_scale=7.5, cpu_trace_dtype="float32", **kw))
    prompts = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(prior)))
    return guidance, prompts.embeddings


def _front_views(azimuth: float, b: int = 2):
    z = torch.zeros(b)
    return make_batch(z + 10.0, z + azimuth, z + 2.0, z + 50.0, torch.ones(b, 3), 4)


def test_sds_gives_a_camera_conditioned_prior_the_cameras_raymaps(camera_pixel_prior):
    guidance, emb = _guidance(camera_pixel_prior)
    assert guidance.camera_conditioned
    b, res = 2, guidance.prior.image_size
    rgb = torch.rand(b, res, res, 3, requires_grad=True)
    batch = _front_views(20.0)
    t, noise = torch.tensor([150, 650]), torch.randn(b, 3, res, res)
    guidance(rgb, emb, batch, t=t, noise=noise).losses["sds"].backward()

    x = rgb.detach().permute(0, 3, 1, 2) * 2 - 1
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x + (1 - a).sqrt() * noise
    cond, uncond = emb.for_cameras(batch.elevation, batch.azimuth)
    ray = spherical_raymap(batch.elevation, batch.azimuth, batch.distance, batch.fovy, res)

    def expected_gradient(camera):
        inp = torch.cat([noisy, camera], dim=1)
        with torch.no_grad():
            eps = guidance.prior.unet(torch.cat([inp, inp]), torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, uncond])).sample[:, :3]
        eps_c, eps_u = eps.chunk(2)
        return 2 * (1 - a) * (eps_u + 7.5 * (eps_c - eps_u) - noise) / b

    grad = rgb.grad.permute(0, 3, 1, 2)
    expected = expected_gradient(ray)
    # the traced float32 UNet rounds differently from the eager one: tolerance 1e-3 of the gradient's scale
    scale = expected.abs().amax().item()
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-3 * scale)
    assert (grad - expected_gradient(spherical_raymap(batch.elevation, batch.azimuth + 30.0, batch.distance, batch.fovy, res))).abs().amax() > 0.02 * scale


@pytest.mark.parametrize("guidance_type", ["sds", "sjc"])
def test_two_cameras_of_one_view_bin_get_different_gradients_only_from_a_camera_conditioned_prior(
    pixel_prior, camera_pixel_prior, guidance_type
):
    from lift3d.guidance.sjc import SJCGuidance

    cls = {"sds": DiffusersSDSGuidance, "sjc": SJCGuidance}[guidance_type]

    def gradient(prior, azimuth):
        guidance, emb = _guidance(prior, cls)
        res = guidance.prior.image_size
        g = torch.Generator().manual_seed(0)
        rgb = torch.rand(2, res, res, 3, generator=g).requires_grad_(True)
        noise = torch.randn(2, guidance.encode(rgb).shape[1], res, res, generator=g)
        guidance(rgb, emb, _front_views(azimuth), t=torch.tensor([300, 600]), noise=noise).losses["sds"].backward()
        return rgb.grad

    # azimuths 0 and 30 are both front views: the prompt is the same, only the camera features differ
    assert (gradient(camera_pixel_prior, 0.0) - gradient(camera_pixel_prior, 30.0)).abs().amax() > 1e-6
    torch.testing.assert_close(gradient(pixel_prior, 0.0), gradient(pixel_prior, 30.0))


def test_vsd_refuses_a_camera_conditioned_prior(camera_pixel_prior):
    from lift3d.guidance.vsd import VSDGuidance

    with pytest.raises(PriorError, match="camera-conditioned already"):
        VSDGuidance(VSDGuidance.Config(pretrained_model_name_or_path=str(camera_pixel_prior)))


def test_a_camera_prior_initialised_from_a_plain_one_starts_as_it_and_training_moves_its_raymap_weights(tmp_path):
    from lift3d.guidance.diffusers_prior import load_frozen_prior
    from lift3d.priors import BUNDLED
    from lift3d.priors.text_prior.model import build_text_encoder, build_unet
    from lift3d.priors.text_prior.train import init_from, main

    plain = load_frozen_prior(BUNDLED["text"]).unet
    unet = build_unet(camera_conditioned=True)
    init_from(BUNDLED["text"], unet, build_text_encoder())
    g = torch.Generator().manual_seed(3)
    x, t, ctx = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([100, 900]), torch.randn(2, 5, 64, generator=g)
    ray = spherical_raymap(torch.tensor([10.0, 40.0]), torch.tensor([0.0, 70.0]), torch.tensor([2.5, 2.5]), torch.tensor([45.0, 45.0]), 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(torch.cat([x, ray], 1), t, encoder_hidden_states=ctx).sample,
                                   plain(x, t, encoder_hidden_states=ctx).sample)

    threads = torch.get_num_threads()
    try:
        main(["--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2", "--images", "8", "--threads", "1",
              "--sample-every", "2", "--sample-steps", "2", "--camera", "--init-from", str(BUNDLED["text"]), "--warmup", "1",
              "--prediction-type", "sample"])
    finally:
        torch.set_num_threads(threads)
    prior = load_frozen_prior(tmp_path / "run" / "prior")
    assert prior.unet.config.in_channels == 3 + RAYMAP_CHANNELS and prior.prediction_type == "sample"
    assert prior.unet.conv_in.weight[:, 3:].abs().amax() > 0  # the ray map's input weights learned from zero
    guidance = DiffusersSDSGuidance(DiffusersSDSGuidance.Config(pretrained_model_name_or_path=str(tmp_path / "run" / "prior")))
    assert guidance.camera_conditioned


def test_a_marked_prior_without_the_raymap_channels_is_a_clear_error(tmp_path):
    import json

    from tiny_priors import build_pixel_prior

    from lift3d.priors.text_prior.camera import MARKER_KEY

    path = build_pixel_prior(tmp_path / "plain")
    index = json.loads((path / "model_index.json").read_text())
    (path / "model_index.json").write_text(json.dumps({**index, MARKER_KEY: "raymap"}))
    with pytest.raises(PriorError, match="takes 3 input channels but a camera-conditioned text prior needs 3 \\+ 6"):
        DiffusersSDSGuidance(DiffusersSDSGuidance.Config(pretrained_model_name_or_path=str(path)))


def test_the_refine_preset_renders_on_the_background_its_camera_prior_was_trained_on():
    from pathlib import Path

    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.guidance.prior_path import resolve_prior_path
    from lift3d.priors.text_prior.camera import training_background

    root = Path(__file__).resolve().parents[1]
    cfg = parse(ExperimentConfig, load_mapping(root / "configs" / "magic3d-refine-bundled.yaml",
                                                ["system.prompt_processor.prompt=a cube", "system.geometry_convert_from=x"]))
    prior = resolve_prior_path(cfg.system.guidance.pretrained_model_name_or_path)
    assert is_camera_conditioned(prior)
    background = training_background(prior)
    assert background is not None
    assert tuple(cfg.system.background.color) == pytest.approx(background)
    assert cfg.system.background.random_aug is False


def test_redrawing_the_raymap_weights_keeps_the_image_weights_and_matches_their_spread():
    from lift3d.priors import BUNDLED
    from lift3d.priors.text_prior.model import build_text_encoder, build_unet
    from lift3d.priors.text_prior.train import init_from, redraw_raymap_weights

    unet = build_unet(camera_conditioned=True)
    init_from(BUNDLED["text"], unet, build_text_encoder())
    image = unet.conv_in.weight[:, :3].clone()
    assert unet.conv_in.weight[:, 3:].abs().amax() == 0
    redraw_raymap_weights(unet, seed=0)
    torch.testing.assert_close(unet.conv_in.weight[:, :3], image, rtol=0, atol=0)
    assert unet.conv_in.weight[:, 3:].std().item() == pytest.approx(image.std().item(), rel=0.15)


def test_high_noise_timesteps_come_from_the_noisiest_thirty_percent_at_the_asked_rate():
    from lift3d.priors.text_prior.train import sample_timesteps

    plain = sample_timesteps(4000, 1000, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, torch.randint(0, 1000, (4000,), generator=torch.Generator().manual_seed(0)))
    assert (sample_timesteps(500, 1000, 1.0, torch.Generator().manual_seed(0)) >= 700).all()
    half = sample_timesteps(4000, 1000, 0.5, torch.Generator().manual_seed(1))
    # half from [700, 1000), half uniform (of which 30 % land there too): 65 % in all
    assert (half >= 700).float().mean().item() == pytest.approx(0.65, abs=0.03)
    assert half.min() >= 0 and half.max() < 1000


@pytest.mark.parametrize("change", ["system.background.random_aug=true", "system.background.color=[1.0,1.0,1.0]",
                                    "system.background_type=neural-environment-map"])
def test_rendering_a_grey_trained_prior_on_another_background_is_a_config_error(change):
    from pathlib import Path

    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.errors import ConfigError
    from lift3d.experiment import ExperimentConfig

    preset = Path(__file__).resolve().parents[1] / "configs" / "magic3d-refine-bundled.yaml"
    overrides = ["system.prompt_processor.prompt=a cube", "system.geometry_convert_from=x", change]
    with pytest.raises(ConfigError, match=r"system.background: the prior bundled:text-camera was trained on one background colour, \[0.5, 0.5, 0.5\]"), \
            explicit_keys(override_keys(overrides)):
        parse(ExperimentConfig, load_mapping(preset, overrides))
