"""SJC: perturb-and-average scoring on tiny random priors, latent rendering, the voxel grid, the emptiness loss."""

import pytest
import torch

from lift3d.backgrounds.textured_background import TexturedBackground
from lift3d.data.random_camera import make_batch
from lift3d.geometry.volume_grid import VolumeGrid, trilinear
from lift3d.guidance.sjc import SJCGuidance
from lift3d.materials.no_material import NoMaterial
from lift3d.prompts.diffusers_prompt_processor import DiffusersPromptProcessor
from lift3d.renderers.volume import NeRFVolumeRenderer


def setup(prior, scale=7.5, **kw):
    guidance = SJCGuidance(SJCGuidance.Config(pretrained_model_name_or_path=str(prior), guidance_scale=scale, **kw))
    prompts = DiffusersPromptProcessor(DiffusersPromptProcessor.Config(prompt="a red cube", pretrained_model_name_or_path=str(prior)))
    return guidance, prompts.embeddings


def cameras(b, res=4):
    z = torch.zeros(b)
    return make_batch(z + 10.0, torch.linspace(-170, 170, b), z + 2.0, z + 50.0, torch.ones(b, 3), res)


def cfg_eps(guidance, emb, batch, x_in, t, scale):
    """eps_uncond + scale (eps_cond - eps_uncond), straight from the UNet."""
    cond, uncond = emb.for_cameras(batch.elevation, batch.azimuth)
    with torch.no_grad():
        eps = guidance.prior.denoise(torch.cat([x_in, x_in]), torch.cat([t, t]), torch.cat([cond, uncond]))
    eps = eps[:, : x_in.shape[1]]
    eps_c, eps_u = eps.chunk(2)
    return eps_u + scale * (eps_c - eps_u)


@pytest.mark.parametrize("variance_reduction", [True, False])
def test_paas_gradient_on_a_pixel_prior(pixel_prior, variance_reduction):
    guidance, emb = setup(pixel_prior, variance_reduction=variance_reduction)
    b, res = 2, guidance.prior.image_size
    rgb = torch.rand(b, res, res, 3, requires_grad=True)
    batch, t, noise = cameras(b), torch.tensor([50, 600]), torch.randn(b, 3, res, res)
    guidance(rgb, emb, batch, t=t, noise=noise).losses["sds"].backward()

    # by hand, in SJC's own terms
    y = rgb.detach().permute(0, 3, 1, 2) * 2 - 1
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    sigma = ((1 - a) / a).sqrt()
    z = y + sigma * noise
    eps_hat = cfg_eps(guidance, emb, batch, z / (1 + sigma**2).sqrt(), t, 7.5)
    denoised = z - sigma * eps_hat
    score = (denoised - y) / sigma if variance_reduction else (denoised - z) / sigma
    expected = noise - eps_hat if variance_reduction else -eps_hat
    torch.testing.assert_close(score, expected, rtol=1e-4, atol=1e-5)
    # the loss descends -score: d loss / d y = -score / B, and y = 2 rgb - 1
    torch.testing.assert_close(rgb.grad.permute(0, 3, 1, 2), -2 * expected / b, rtol=1e-4, atol=1e-6)


def test_latent_rendering_scores_the_render_itself_and_never_encodes(latent_prior, monkeypatch):
    guidance, emb = setup(latent_prior)
    channels, size = guidance.latent_channels, guidance.prior.sample_size
    encoder_calls = []
    monkeypatch.setattr(guidance.prior.vae, "encode", lambda *a, **k: encoder_calls.append(1))
    render = torch.randn(2, size, size, channels, requires_grad=True)
    batch, t, noise = cameras(2), torch.tensor([100, 400]), torch.randn(2, channels, size, size)
    guidance(render, emb, batch, t=t, noise=noise).losses["sds"].backward()
    assert encoder_calls == []
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    y = render.detach().permute(0, 3, 1, 2)
    sigma = ((1 - a) / a).sqrt()
    eps_hat = cfg_eps(guidance, emb, batch, (y + sigma * noise) / (1 + sigma**2).sqrt(), t, 7.5)
    torch.testing.assert_close(render.grad.permute(0, 3, 1, 2), -(noise - eps_hat) / 2, rtol=1e-4, atol=1e-6)
    # images to save are decoded to RGB in [0, 1] at the render's size
    shown = guidance.to_display(render.detach())
    assert shown.shape == (2, size, size, 3) and shown.min() >= 0 and shown.max() <= 1
    # a 3-channel render still goes through the VAE encoder, as SDS
    monkeypatch.undo()
    rgb = torch.rand(1, guidance.prior.image_size, guidance.prior.image_size, 3)
    assert guidance.to_prior_space(rgb).shape == (1, channels, size, size)


def reference_trilinear(grid, p):
    """Plain trilinear interpolation of a [C, z, y, x] grid at points in [-1, 1]^3."""
    n = grid.shape[-1]
    u = (p + 1) / 2 * (n - 1)
    i0 = u.floor().clamp(0, n - 2).long()
    f = u - i0
    out = 0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out = out + w[:, None] * grid[:, i0[:, 2] + dz, i0[:, 1] + dy, i0[:, 0] + dx].t()
    return out


@pytest.mark.parametrize("n, channels", [(2, 1), (5, 3), (8, 4)])
def test_trilinear_matches_a_plain_reference_forward_and_backward(n, channels):
    torch.manual_seed(n)
    grid = torch.randn(channels, n, n, n, dtype=torch.float64, requires_grad=True)
    p = (torch.rand(50, 3, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    a, b = trilinear(grid, p), reference_trilinear(grid, p)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a.sin().sum(), (grid, p))
    gb = torch.autograd.grad(b.sin().sum(), (grid, p))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)
    assert torch.autograd.gradcheck(trilinear, (grid, p))


def test_volume_grid_is_exact_at_its_vertices_and_float32_matches_float64():
    g = VolumeGrid(VolumeGrid.Config(grid_size=5, radius=2.0, n_feature_dims=4, feature_activation="none", density_bias="none"))
    with torch.no_grad():
        g.features.normal_()
        g.density.normal_()
    ijk = torch.tensor([[0, 0, 0], [4, 2, 1], [1, 3, 4]])
    points = -2.0 + 4.0 * ijk.float() / 4
    feats = g.features_at(points)
    torch.testing.assert_close(feats, g.features[:, ijk[:, 2], ijk[:, 1], ijk[:, 0]].t())
    density = g.forward_density(points)
    torch.testing.assert_close(density, torch.nn.functional.softplus(g.density[0, ijk[:, 2], ijk[:, 1], ijk[:, 0]]))
    g64 = VolumeGrid(g.cfg).double()
    g64.load_state_dict(g.state_dict())
    x = torch.rand(100, 3) * 3.8 - 1.9
    torch.testing.assert_close(g(x, with_normal=True).normal, g64(x.double(), with_normal=True).normal.float(), rtol=1e-3, atol=1e-3)


def test_latent_features_render_with_their_channels_over_a_textured_background():
    geo = VolumeGrid(VolumeGrid.Config(grid_size=8, n_feature_dims=4, feature_activation="none", feature_init_std=1.0))
    bg = TexturedBackground(TexturedBackground.Config(n_output_dims=4, activation="none", init_value=0.3))
    renderer = NeRFVolumeRenderer(NeRFVolumeRenderer.Config(num_samples_per_ray=16), geo, NoMaterial(NoMaterial.Config(n_output_dims=4, clamp=False)), bg)
    out = renderer(cameras(2, res=8))
    assert out.comp_rgb.shape == (2, 8, 8, 4) and out.comp_rgb_bg.shape == (2, 8, 8, 4)
    corner = out.opacity[:, 0, 0, 0] < 1e-3  # rays that miss the blob show the background texture
    assert torch.allclose(out.comp_rgb[:, 0, 0][corner], torch.full((int(corner.sum()), 4), 0.3), atol=1e-4)
    out.comp_rgb.sum().backward()
    assert geo.features.grad.abs().sum() > 0 and bg.texture.grad.abs().sum() > 0
    assert out.sample_weights is not None and out.sample_weights.numel() == out.samples_evaluated


def test_emptiness_loss_is_sjc_log_of_weights(tmp_path):
    from lift3d.renderers.base import RenderOutput
    from lift3d.systems.dreamfusion import DreamFusionSystem

    w = torch.tensor([0.0, 0.1, 0.5])
    out = RenderOutput(comp_rgb=torch.zeros(1, 1, 1, 3), comp_rgb_bg=torch.zeros(1, 1, 1, 3), opacity=torch.zeros(1, 1, 1, 1),
                       depth=torch.zeros(1, 1, 1, 1), sample_weights=w)
    import lightning.pytorch as pl

    system = DreamFusionSystem.__new__(DreamFusionSystem)  # the loss only: no prior, no modules
    pl.LightningModule.__init__(system)
    system.cfg = DreamFusionSystem.Config(loss={"lambda_emptiness": 1.0}, emptiness_scale=10.0)
    losses = system.regularizers(out)
    assert losses["emptiness"].item() == pytest.approx(torch.log1p(10 * w).mean().item())
    # the centre loss falls as the centre gets deeper than the border
    from lift3d.systems.dreamfusion import center_depth_loss

    flat, centred = torch.ones(1, 8, 8, 1), torch.zeros(1, 8, 8, 1)
    centred[:, 2:6, 2:6] = 2.0
    assert center_depth_loss(centred, 0.5) < center_depth_loss(centred * 0.5, 0.5) < center_depth_loss(flat, 0.5)


def test_the_dreamfusion_preset_runs_with_sjc_guidance_by_one_override(tmp_path):
    from run_helpers import ROOT, SMALL, launch, trial_dirs

    out = tmp_path / "outputs"
    args = ["--config", str(ROOT / "configs" / "dreamfusion-bundled.yaml"), "--train", "system.prompt_processor.prompt=a red cube",
            "system.guidance_type=sjc-guidance", "trainer.max_steps=2", f"exp_root_dir={out}", *SMALL]
    proc = launch(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the preset's SDS-only key is dropped with a notice; the run used SJC's guidance
    assert "note: system.guidance is now 'sjc-guidance', which has no option weighting" in proc.stderr
    (trial,) = trial_dirs(out)
    assert "sjc-guidance" in (trial / "configs" / "parsed.yaml").read_text()
    # a key typed on the command line that SJC lacks stays an error, with a did-you-mean
    proc = launch([*args, "system.guidance.weighting=uniform"], tmp_path)
    assert proc.returncode != 0 and "system.guidance.weighting: unknown key" in proc.stderr


def test_a_render_with_the_wrong_channel_count_is_a_clear_error(pixel_prior):
    guidance, emb = setup(pixel_prior)
    with pytest.raises(Exception, match="the render has 4 channels but the prior .* takes 3"):
        guidance(torch.rand(1, 8, 8, 4), emb, cameras(1))


def test_log_sigma_sampling_is_uniform_in_log_sigma_within_the_range(pixel_prior):
    guidance, _ = setup(pixel_prior, sigma_sampling="log_sigma", min_step_percent=0.1, max_step_percent=0.9)
    lo, hi = guidance.timestep_range()
    torch.manual_seed(0)
    t = guidance.sample_timesteps(lo, hi, 4000, torch.device("cpu"))
    assert lo <= int(t.min()) and int(t.max()) <= hi
    log_sigma = guidance.sigma(t).log()
    a, b = guidance.sigma(torch.tensor([lo, hi])).log()
    halves = (log_sigma < (a + b) / 2).float().mean()
    assert abs(halves - 0.5) < 0.05  # half the draws in each half of the log-sigma range
    guidance.cfg.sigma_sampling = "timestep"  # the default draws timesteps uniformly instead
    t2 = guidance.sample_timesteps(lo, hi, 4000, torch.device("cpu"))
    assert abs((t2 < (lo + hi) / 2).float().mean() - 0.5) < 0.05


def test_a_latent_rendering_step_never_encodes_and_its_saved_images_are_decoded(latent_prior, monkeypatch):
    """The sjc-sd preset's system on a tiny random SD-layout prior: one training step and one saved frame."""
    from run_helpers import ROOT

    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.data.random_camera import RandomCameraDataModule
    from lift3d.experiment import ExperimentConfig
    from lift3d.systems.dreamfusion import DreamFusionSystem

    overrides = ["system.prompt_processor.prompt=a red cube", f"system.guidance.pretrained_model_name_or_path={latent_prior}",
                 "system.geometry.grid_size=12", "system.renderer.num_samples_per_ray=16", "data.resolution=16", "data.eval_resolution=16"]
    with explicit_keys(override_keys(overrides)):
        cfg = parse(ExperimentConfig, load_mapping(ROOT / "configs" / "sjc-sd.yaml", overrides))
    system = DreamFusionSystem(cfg.system)
    vae = system.guidance.prior.vae
    monkeypatch.setattr(vae, "encode", lambda *a, **k: pytest.fail("the VAE encoder ran during latent rendering"))
    data = RandomCameraDataModule(cfg.data)
    batch = data.train_dataset.sample(0)
    out = system(batch)
    assert out.comp_rgb.shape[-1] == vae.config.latent_channels == 4
    loss = system.guidance(out.comp_rgb, system.prompt_processor.embeddings, batch).losses["sds"]
    loss.backward()
    assert system.geometry.features.grad.abs().sum() > 0
    system.eval()
    with torch.no_grad():
        images = system._eval_images(data.test_dataset[0])
    assert images[0].shape == (16, 16, 3) and 0 <= float(images[0].min()) and float(images[0].max()) <= 1
