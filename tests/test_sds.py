"""SDS over real (tiny, random-weight) diffusers-layout priors loaded from disk."""

import pytest
import torch

from lift3d.data.random_camera import make_batch
from lift3d.guidance.sds import DiffusersSDSGuidance, sds_weight
from lift3d.prompts.diffusers_prompt_processor import DiffusersPromptProcessor


def setup(prior, weighting="sds", scale=7.5, **kw):
    guidance = DiffusersSDSGuidance(DiffusersSDSGuidance.Config(pretrained_model_name_or_path=str(prior), guidance_scale=scale, weighting=weighting, **kw))
    prompts = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(prior)))
    return guidance, prompts.embeddings


def cameras(b):
    z = torch.zeros(b)
    return make_batch(z + 10.0, torch.linspace(-170, 170, b), z + 2.0, z + 50.0, torch.ones(b, 3), 4)


@pytest.mark.parametrize("weighting", ["sds", "uniform", "fantasia3d", "x0"])
def test_pixel_prior_gradient_equals_weighted_noise_residual(pixel_prior, weighting):
    guidance, emb = setup(pixel_prior, weighting)
    b, res = 2, guidance.prior.image_size  # same size as the prior: no resize in between
    rgb = torch.rand(b, res, res, 3, requires_grad=True)
    batch = cameras(b)
    t = torch.tensor([100, 700])
    noise = torch.randn(b, 3, res, res)
    out = guidance(rgb, emb, batch, t=t, noise=noise)
    out.losses["sds"].backward()

    # by hand, straight from the UNet
    x = rgb.detach().permute(0, 3, 1, 2) * 2 - 1
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x + (1 - a).sqrt() * noise
    cond, uncond = emb.for_cameras(batch.elevation, batch.azimuth)
    with torch.no_grad():
        eps = guidance.prior.denoise(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([cond, uncond]))
    eps = eps[:, :3]  # learned-variance UNet: the first half is the noise
    eps_c, eps_u = eps.chunk(2)
    eps_hat = eps_u + 7.5 * (eps_c - eps_u)
    w = {"sds": 1 - a, "uniform": torch.ones_like(a), "fantasia3d": a.sqrt() * (1 - a), "x0": ((1 - a) / a).sqrt()}[weighting]
    expected_x_grad = w * (eps_hat - noise) / b
    # x = 2 rgb - 1: the render's gradient is twice the gradient at x
    torch.testing.assert_close(rgb.grad.permute(0, 3, 1, 2), 2 * expected_x_grad, rtol=1e-5, atol=1e-7)
    assert expected_x_grad.abs().sum() > 0


def test_x0_weighting_makes_the_gradient_the_denoised_residual():
    """w(t) (eps_hat - eps) = x0 - x0_hat at every t, where eps_hat is the noise a denoiser's x0_hat implies."""
    torch.manual_seed(0)
    a = torch.tensor([0.999, 0.7, 0.2, 0.001], dtype=torch.float64).view(-1, 1, 1, 1)
    x0, x0_hat, noise = torch.rand(3, 4, 3, 8, 8, dtype=torch.float64) * 2 - 1
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    eps_hat = (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt()
    torch.testing.assert_close(sds_weight("x0", a) * (eps_hat - noise), x0 - x0_hat)


def test_latent_prior_gradient_at_latents(latent_prior):
    guidance, emb = setup(latent_prior)
    captured = {}
    encode = guidance.encode

    def spy(rgb):
        x = encode(rgb)
        x.retain_grad()
        captured["x"] = x
        return x

    guidance.encode = spy
    b = 1
    rgb = torch.rand(b, 24, 24, 3, requires_grad=True)  # resized to the VAE's 16x16 input
    batch = cameras(b)
    t = torch.tensor([500])
    noise = torch.randn(b, 4, 8, 8)
    out = guidance(rgb, emb, batch, t=t, noise=noise)
    out.losses["sds"].backward()
    expected = guidance.sds_gradient(captured["x"].detach(), *emb.for_cameras(batch.elevation, batch.azimuth), t, noise)
    torch.testing.assert_close(captured["x"].grad, expected / b)
    assert rgb.grad.abs().sum() > 0  # through the VAE encoder and the resize


def test_timestep_annealing_and_clipping(pixel_prior):
    guidance, emb = setup(pixel_prior, min_step_percent=0.02, max_step_percent=[[0, 0.98], [100, 0.5]], grad_clip=0.01)
    guidance.update_step(0)
    assert guidance.timestep_range() == (20, 980)
    guidance.update_step(50)
    assert guidance.timestep_range() == (20, 740)
    guidance.update_step(1000)
    assert guidance.timestep_range() == (20, 500)
    res = guidance.prior.image_size
    x = torch.rand(1, 3, res, res) * 2 - 1
    g = guidance.sds_gradient(x, *emb.for_cameras(torch.zeros(1), torch.zeros(1)), torch.tensor([900]), torch.randn_like(x))
    assert g.abs().max() <= 0.01 + 1e-9


def test_weight_functions():
    a = torch.tensor([0.25])
    assert sds_weight("sds", a).item() == pytest.approx(0.75)
    assert sds_weight("fantasia3d", a).item() == pytest.approx(0.5 * 0.75)


def test_missing_prior_directory_is_a_clear_error(tmp_path):
    from lift3d.errors import PriorError

    with pytest.raises(PriorError, match="not found: no such directory"):
        DiffusersSDSGuidance(DiffusersSDSGuidance.Config(pretrained_model_name_or_path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorError, match="not a diffusers-layout prior"):
        DiffusersSDSGuidance(DiffusersSDSGuidance.Config(pretrained_model_name_or_path=str(tmp_path / "empty")))


def _copy_prior(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_prior_that_returns_nan_stops_the_step_with_a_clear_error(pixel_prior, tmp_path):
    """A NaN from the prior used to become a zero gradient (nan_to_num) and training silently stopped learning."""
    from diffusers import UNet2DConditionModel

    from lift3d.errors import RunError

    broken = _copy_prior(pixel_prior, tmp_path / "broken")
    unet = UNet2DConditionModel.from_pretrained(broken, subfolder="unet")
    with torch.no_grad():
        unet.conv_out.bias[0] = float("nan")  # one output channel of the noise half is NaN everywhere
    unet.save_pretrained(broken / "unet")
    guidance, emb = setup(broken)
    res = guidance.prior.image_size
    rgb = torch.rand(2, res, res, 3, requires_grad=True)
    with pytest.raises(RunError, match=r"non-finite in 33\.3% of elements.*half_precision=false"):
        guidance(rgb, emb, cameras(2))
    # with a tolerance above the fraction, the step goes on: NaNs zeroed, the fraction reported
    tolerant, emb = setup(broken, max_nonfinite_fraction=0.5)
    t, noise = torch.tensor([300, 600]), torch.randn(2, 3, res, res)
    out = tolerant(rgb, emb, cameras(2), t=t, noise=noise)
    assert out.info["nonfinite_fraction"] == pytest.approx(1 / 3)
    assert torch.isfinite(out.losses["sds"])
    out.losses["sds"].backward()
    g = rgb.grad.permute(0, 3, 1, 2)
    assert torch.isfinite(g).all()
    # the NaN channel's prediction counts as zero: its gradient is w(t) * (0 - noise), times 2 for x = 2 rgb - 1, over B
    a = tolerant.prior.alphas_cumprod[t].view(-1, 1)
    torch.testing.assert_close(g[:, 0].reshape(2, -1), 2 * (1 - a) * (-noise[:, 0].reshape(2, -1)) / 2)


def test_a_healthy_prior_reports_no_nonfinite_elements(pixel_prior):
    guidance, emb = setup(pixel_prior)
    res = guidance.prior.image_size
    out = guidance(torch.rand(1, res, res, 3), emb, cameras(1))
    assert out.info["nonfinite_fraction"] == 0.0


def _with_prediction_type(src, dst, prediction_type):
    import json

    _copy_prior(src, dst)
    cfg_file = dst / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["prediction_type"] = prediction_type
    cfg_file.write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_v_and_x0_prediction_priors_give_the_epsilon_gradient(pixel_prior, tmp_path, prediction_type):
    prior = _with_prediction_type(pixel_prior, tmp_path / prediction_type, prediction_type)
    guidance, emb = setup(prior, "uniform", scale=3.0)
    assert guidance.prior.prediction_type == prediction_type
    b, res = 2, guidance.prior.image_size
    rgb = torch.rand(b, res, res, 3, requires_grad=True)
    batch = cameras(b)
    t, noise = torch.tensor([150, 800]), torch.randn(b, 3, res, res)
    guidance(rgb, emb, batch, t=t, noise=noise).losses["sds"].backward()

    # by hand: the UNet's output is v (or x0); turn each branch into ε, then guide
    x = rgb.detach().permute(0, 3, 1, 2) * 2 - 1
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x + (1 - a).sqrt() * noise
    cond, uncond = emb.for_cameras(batch.elevation, batch.azimuth)
    with torch.no_grad():
        out = guidance.prior.denoise(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([cond, uncond]))[:, :3]
    out_c, out_u = out.chunk(2)
    if prediction_type == "v_prediction":
        eps_c, eps_u = (a.sqrt() * v + (1 - a).sqrt() * noisy for v in (out_c, out_u))
    else:
        eps_c, eps_u = ((noisy - a.sqrt() * x0) / (1 - a).sqrt() for x0 in (out_c, out_u))
    eps_hat = eps_u + 3.0 * (eps_c - eps_u)
    expected = 2 * (eps_hat - noise) / b
    torch.testing.assert_close(rgb.grad.permute(0, 3, 1, 2), expected, rtol=1e-4, atol=1e-6)
    # and it is not what the ε reading of the same output would give
    wrong = 2 * (out_u + 3.0 * (out_c - out_u) - noise) / b
    assert (rgb.grad.permute(0, 3, 1, 2) - wrong).abs().max() > 1e-2


def test_an_unsupported_prediction_type_is_a_clear_error(pixel_prior, tmp_path):
    from lift3d.errors import PriorError

    prior = _with_prediction_type(pixel_prior, tmp_path / "odd", "flow_matching")
    with pytest.raises(PriorError, match="predicts 'flow_matching'.*supported prediction_type values: epsilon, v_prediction, sample"):
        setup(prior)


def test_to_epsilon_inverts_the_forward_process():
    from lift3d.guidance.noise_prediction import to_epsilon

    torch.manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    a = torch.tensor([0.9, 0.5, 0.05]).view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(to_epsilon(eps, x_t, a, "epsilon"), eps)
    torch.testing.assert_close(to_epsilon(v, x_t, a, "v_prediction"), eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(to_epsilon(x0, x_t, a, "sample"), eps, rtol=1e-4, atol=1e-4)
