"""The view-conditioned prior: its loader (bundled pixel and Zero123-like latent layouts), conditioning, metrics."""

import json
import math

import pytest
import torch

from lift3d.errors import PriorError
from lift3d.eval.novel_view import foreground_mask, mask_iou, novel_view_scores, psnr, ssim
from lift3d.guidance.view_prior import load_view_prior
from lift3d.priors import BUNDLED
from lift3d.priors.view_prior.model import build_image_encoder, relative_camera
from lift3d.priors.view_prior.train import render_pairs, sample_view_pairs
from lift3d.priors.world.catalog import HELD_OUT
from tiny_priors import build_latent_view_prior


def test_bundled_view_prior_loads_in_zero123_layout():
    index = json.loads((BUNDLED["view"] / "model_index.json").read_text())
    assert {"unet", "image_encoder", "cc_projection", "feature_extractor", "scheduler"} <= set(index)
    prior = load_view_prior(BUNDLED["view"])
    assert not prior.is_latent and prior.image_size == 32
    assert prior.unet.config.in_channels == 2 * prior.unet.config.out_channels  # noisy target ++ reference
    assert prior.cc_projection.config.in_channel == prior.image_encoder.config.projection_dim + 4
    assert not any(p.requires_grad for p in prior.unet.parameters())


def test_latent_zero123_layout_loads_and_samples_through_the_same_code(tmp_path):
    prior = load_view_prior(build_latent_view_prior(tmp_path / "zero123"))
    assert prior.is_latent and prior.image_size == 16
    ref = torch.rand(2, 3, 16, 16)
    cam = relative_camera(*torch.zeros(3, 2), torch.tensor([10.0, 0.0]), torch.tensor([90.0, 180.0]), torch.zeros(2))
    out = prior.sample(ref, cam, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
    context, concat = prior.conditioning(ref, cam)
    assert context.shape == (2, 1, 16) and concat.shape == (2, 4, 8, 8)


def test_guidance_scale_one_is_the_conditional_prediction_and_zero_the_unconditional(tmp_path):
    prior = load_view_prior(build_latent_view_prior(tmp_path / "zero123"))
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    context, concat = prior.conditioning(torch.rand(1, 3, 16, 16), torch.tensor([[0.1, 0.5, 0.8, 0.2]]))
    with torch.no_grad():
        cond = prior.unet(torch.cat([x, concat], 1), t, encoder_hidden_states=context).sample
        uncond = prior.unet(torch.cat([x, torch.zeros_like(concat)], 1), t, encoder_hidden_states=torch.zeros_like(context)).sample
        torch.testing.assert_close(prior.predict_noise(x, t, context, concat, 1.0), cond, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(prior.predict_noise(x, t, context, concat, 0.0), uncond, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(cond, uncond)


def test_a_directory_that_is_not_a_view_prior_is_an_error_naming_what_is_missing(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(PriorError, match="missing model_index.json, image_encoder/, cc_projection/, scheduler/"):
        load_view_prior(tmp_path)


def test_relative_camera_features():
    cam = relative_camera(torch.tensor([10.0]), torch.tensor([170.0]), torch.tensor([2.5]),
                          torch.tensor([40.0]), torch.tensor([-100.0]), torch.tensor([2.2]))
    d_az = math.radians(-270.0)  # same direction as +90 degrees
    torch.testing.assert_close(cam, torch.tensor([[math.radians(30.0), math.sin(d_az), math.cos(d_az), -0.3]]))


def test_view_pairs_share_light_background_and_field_of_view_but_not_the_camera():
    ref, tgt = sample_view_pairs(64, torch.Generator().manual_seed(0))
    assert torch.equal(ref.light_position, tgt.light_position) and torch.equal(ref.background, tgt.background)
    assert torch.equal(ref.fovy, tgt.fovy) and not torch.allclose(ref.azimuth, tgt.azimuth)


def test_rendered_pairs_differ_in_view_and_keep_their_background():
    data = render_pairs(list(HELD_OUT), 4, seed=3)
    assert data["reference"].shape == data["target"].shape == (4, 3, 32, 32)
    # cameras differ, so do the views; the background colour is the one stored
    assert (data["reference"] != data["target"]).any()
    corner = data["reference"][:, :, 0, 0].float() / 255
    torch.testing.assert_close(corner, data["background"], atol=1 / 255, rtol=0)


def test_image_metrics_reward_the_right_answer():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(32, 32, 3, generator=g)
    noisy = (target + 0.05 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert psnr(target, target) == float("inf") and ssim(target, target) == pytest.approx(1.0)
    assert 20 < psnr(noisy, target) < 35 and ssim(noisy, target) < 1.0
    assert psnr(noisy, target) > psnr(torch.rand(32, 32, 3, generator=g), target)
    bg = torch.tensor([0.2, 0.4, 0.6])
    img = bg.expand(8, 8, 3).clone()
    img[2:5, 2:5] = 1.0
    m = foreground_mask(img, bg)
    assert m.sum() == 9 and mask_iou(m, m) == 1.0 and mask_iou(m, torch.zeros_like(m)) == 0.0


def test_novel_view_scores_prefer_the_ground_truth_over_another_view():
    data = render_pairs(list(HELD_OUT), 8, seed=5)
    ref, tgt = data["reference"].float() / 255, data["target"].float() / 255
    perfect = novel_view_scores(tgt, tgt, data["target_mask"], data["background"])
    baseline = novel_view_scores(ref, tgt, data["target_mask"], data["background"])
    assert perfect["mask_iou"] > 0.95 and perfect["ssim"] == pytest.approx(1.0)
    assert baseline["psnr"] < 40 and baseline["mask_iou"] < perfect["mask_iou"]


def test_image_encoder_sees_the_world_resolution():
    enc = build_image_encoder()
    out = enc(pixel_values=torch.rand(2, 3, 32, 32))
    assert out.image_embeds.shape == (2, enc.config.projection_dim)


def test_an_x0_prior_trained_with_context_only_dropout_keeps_its_reference_in_the_unconditional_branch(tmp_path):
    from lift3d.guidance.noise_prediction import to_epsilon

    prior = load_view_prior(build_latent_view_prior(tmp_path / "zero123"))
    prior.cc_projection.register_to_config(unconditional_keeps_reference=True)
    prior.scheduler_config["prediction_type"] = "sample"
    assert prior.unconditional_keeps_reference and prior.prediction_type == "sample"
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([700])
    context, concat = prior.conditioning(torch.rand(1, 3, 16, 16), torch.tensor([[0.1, 0.5, 0.8, 0.2]]))
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        uncond = prior.unet(torch.cat([x, concat], 1), t, encoder_hidden_states=torch.zeros_like(context)).sample
        cond = prior.unet(torch.cat([x, concat], 1), t, encoder_hidden_states=context).sample
        torch.testing.assert_close(prior.predict_noise(x, t, context, concat, 0.0), to_epsilon(uncond, x, a, "sample"), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(prior.predict_noise(x, t, context, concat, 1.0), to_epsilon(cond, x, a, "sample"), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(prior.conditional_noise(x, t, context, concat), to_epsilon(cond, x, a, "sample"), atol=1e-5, rtol=1e-4)


def test_the_reference_is_resized_to_what_each_encoder_reads(tmp_path):
    prior = load_view_prior(build_latent_view_prior(tmp_path / "zero123"))
    big = torch.rand(1, 3, 64, 64)
    small = torch.nn.functional.interpolate(big, (16, 16), mode="bilinear", align_corners=False, antialias=True)
    context_big, concat_big = prior.conditioning(big, torch.zeros(1, 4))
    assert concat_big.shape == (1, 4, 8, 8) and context_big.shape == (1, 1, 16)
    torch.testing.assert_close(concat_big, prior.encode_reference(small))
