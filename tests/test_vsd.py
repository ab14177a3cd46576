"""VSD guidance: the gradient against an independent computation, the LoRA's training, both UNet layouts."""

from __future__ import annotations

import copy

import pytest
import torch

from lift3d.data.random_camera import RandomCameraConfig, RandomCameraDataModule
from lift3d.errors import ConfigError
from lift3d.guidance.camera_lora import LoRAConfig, flatten_camera
from lift3d.guidance.noise_prediction import to_epsilon
from lift3d.guidance.vsd import VSDGuidance, diffusion_target
from lift3d.prompts.base import PromptEmbeddings
from lift3d.prompts.view_dependent import ViewThresholds


def batch_of(n: int, resolution: int = 16):
    data = RandomCameraDataModule(RandomCameraConfig(batch_size=n, resolution=resolution))
    return data.train_dataset.sample(0)


def prompt_of(width: int = 16, n_tokens: int = 5) -> PromptEmbeddings:
    g = torch.Generator().manual_seed(3)
    return PromptEmbeddings(cond=torch.randn(n_tokens, width, generator=g), uncond=torch.randn(n_tokens, width, generator=g),
                            views=torch.randn(4, n_tokens, width, generator=g), thresholds=ViewThresholds())


def randomise_lora(guidance: VSDGuidance, seed: int = 0) -> None:
    """Non-zero LoRA matrices and camera MLP, so the LoRA model differs from the prior."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in guidance.lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def vsd(path, **kw) -> VSDGuidance:
    cfg = VSDGuidance.Config(pretrained_model_name_or_path=str(path), **kw)
    return VSDGuidance(cfg)


def test_the_vsd_gradient_is_w_times_guided_prior_minus_lora(pixel_prior):
    """d loss_vsd / d render against w(t) (eps_cfg - eps_lora) from a freshly loaded UNet and an
    independently built LoRA model with the same weights (pixel prior: x = 2 rgb - 1)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.embeddings import TimestepEmbedding
    from peft import LoraConfig

    torch.manual_seed(0)
    guidance = vsd(pixel_prior, guidance_scale=4.0)
    randomise_lora(guidance)
    batch, prompt = batch_of(3), prompt_of()
    rgb = torch.rand(3, 16, 16, 3, requires_grad=True)
    t = torch.tensor([100, 500, 900])
    noise = torch.randn(3, 3, 16, 16)
    out = guidance(rgb, prompt, batch, t=t, noise=noise)
    (grad_rgb,) = torch.autograd.grad(out.losses["vsd"], rgb)

    unet = UNet2DConditionModel.from_pretrained(pixel_prior, subfolder="unet").eval()
    lora_unet = copy.deepcopy(unet)
    lora_unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    camera_mlp = TimestepEmbedding(16, lora_unet.time_embedding.linear_2.out_features)
    ours = dict(guidance.lora.named_parameters())
    with torch.no_grad():
        for name, p in lora_unet.named_parameters():
            if "lora_" in name:  # ...attn1.to_q.lora_A.default.weight -> layers.<...>__to_q__A.weight
                layer, kind = name.split(".lora_")[0], name.split(".lora_")[1][0]
                p.copy_(ours[f"layers.{layer.replace('.', '__')}__{kind}.weight"])
        for name, p in camera_mlp.named_parameters():
            p.copy_(ours[f"camera.{name}"])
    lora_unet.class_embedding = camera_mlp

    x = (rgb.detach() * 2 - 1).permute(0, 3, 1, 2)
    abar = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = abar.sqrt() * x + (1 - abar).sqrt() * noise
    cond, uncond = prompt.for_cameras(batch.elevation, batch.azimuth)
    with torch.no_grad():
        eps_c = unet(noisy, t, encoder_hidden_states=cond).sample[:, :3]
        eps_u = unet(noisy, t, encoder_hidden_states=uncond).sample[:, :3]
        eps_lora = lora_unet(noisy, t, encoder_hidden_states=cond, class_labels=flatten_camera(batch.c2w)).sample[:, :3]
    eps_cfg = eps_u + 4.0 * (eps_c - eps_u)
    expected_x = (1 - abar) * (eps_cfg - eps_lora) / 3
    expected_rgb = (2 * expected_x).permute(0, 2, 3, 1)
    assert (eps_lora - eps_c).abs().mean() > 0.01  # the LoRA model really differs from the prior
    # float32, the same sums batched differently: 1.3e-6 apart on one element of 2,304 on an AMD EPYC
    torch.testing.assert_close(grad_rgb, expected_rgb, rtol=1e-4, atol=1e-5)


def test_training_moves_the_lora_and_camera_mlp_and_never_the_prior(latent_prior):
    torch.manual_seed(0)
    guidance = vsd(latent_prior)
    frozen = {k: v.clone() for k, v in guidance.prior.unet.state_dict().items() if "lora_" not in k}
    frozen_vae = {k: v.clone() for k, v in guidance.prior.vae.state_dict().items()}
    before = {k: v.clone() for k, v in guidance.lora.state_dict().items()}
    opt = torch.optim.Adam(guidance.parameters(), lr=1e-2)
    batch, prompt = batch_of(2), prompt_of()
    rgb = torch.rand(2, 16, 16, 3, requires_grad=True)
    for step in range(3):
        out = guidance(rgb, prompt, batch)
        opt.zero_grad()
        (out.losses["vsd"] + out.losses["lora"]).backward()
        if step == 0:  # the camera MLP and the B matrices get gradients at once (A's wait for B to move from 0)
            assert guidance.lora.camera.linear_2.weight.grad.abs().sum() > 0
            assert all(m.weight.grad.abs().sum() > 0 for k, m in guidance.lora.layers.items() if k.endswith("__B"))
        opt.step()
    after = guidance.lora.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)  # every LoRA matrix and camera weight moved
    for k, v in guidance.prior.unet.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, frozen[k]), k
    assert all(torch.equal(v, frozen_vae[k]) for k, v in guidance.prior.vae.state_dict().items())
    # the module's own state is the LoRA and the camera MLP only: no prior weight would reach a checkpoint
    assert set(guidance.state_dict()) == {f"lora.{k}" for k in after}
    n_lora = sum(p.numel() for p in guidance.lora.layers.parameters())
    assert 0 < n_lora < 0.2 * sum(v.numel() for v in frozen.values())


def test_only_the_lora_loss_reaches_the_lora_and_only_vsd_the_scene(pixel_prior):
    guidance = vsd(pixel_prior)
    randomise_lora(guidance)
    batch, prompt = batch_of(2), prompt_of()
    rgb = torch.rand(2, 16, 16, 3, requires_grad=True)
    out = guidance(rgb, prompt, batch)
    params = list(guidance.lora.parameters())
    grads = torch.autograd.grad(out.losses["vsd"], params, allow_unused=True)
    assert all(g is None for g in grads)
    assert torch.autograd.grad(out.losses["lora"], rgb, allow_unused=True)[0] is None


def test_v_prediction_targets_and_their_conversion_agree():
    """A LoRA model that outputs exactly its training target gives back the true noise."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    a = torch.tensor([0.99, 0.7, 0.3, 0.01]).view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    for kind in ("epsilon", "v_prediction"):
        torch.testing.assert_close(to_epsilon(diffusion_target(x0, eps, a, kind), x_t, a, kind), eps, rtol=1e-5, atol=1e-5)
    v = diffusion_target(x0, eps, a, "v_prediction")
    torch.testing.assert_close(v, a.sqrt() * eps - (1 - a).sqrt() * x0)


def test_lora_epsilon_converts_a_v_prediction_lora(pixel_prior):
    guidance = vsd(pixel_prior, lora_prediction_type="v_prediction")
    randomise_lora(guidance)
    noisy, t = torch.randn(2, 3, 16, 16), torch.tensor([200, 700])
    cond = torch.randn(2, 5, 16)
    camera = flatten_camera(batch_of(2).c2w)
    with torch.no_grad():
        raw = guidance.lora(noisy, t, cond, camera)
        eps = guidance.lora_epsilon(noisy, t, cond, cond, camera)
    a = guidance.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(eps, a.sqrt() * raw + (1 - a).sqrt() * noisy)


def test_shared_and_copied_unet_give_the_same_guidance(pixel_prior, monkeypatch):
    """The adapter in the prior's UNet (switched off for the prior's calls) or in a copy: same losses;
    with a copy, the prior's UNet has no LoRA layers at all."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    # with a copy the prior's own UNet has no adapters and would run as a frozen trace, whose fused
    # convolutions round differently (tests/test_traced_unet.py); this test is about the LoRA layout
    monkeypatch.setenv("LIFT3D_NO_TRACE", "1")
    batch, prompt = batch_of(2), prompt_of()
    rgb = torch.rand(2, 16, 16, 3)
    t, noise = torch.tensor([300, 800]), torch.randn(2, 3, 16, 16)
    results = []
    for layout in ("shared", "copy"):
        guidance = vsd(pixel_prior, lora=LoRAConfig(unet=layout))
        randomise_lora(guidance)
        torch.manual_seed(5)
        out = guidance(rgb, prompt, batch, t=t, noise=noise)
        results.append(out.losses)
        tuned = any(isinstance(m, BaseTunerLayer) for m in guidance.prior.unet.modules())
        assert tuned == (layout == "shared")
        assert guidance.prior.unet.class_embedding is None  # the camera MLP is attached only during LoRA calls
    for name in ("vsd", "lora"):
        torch.testing.assert_close(results[0][name], results[1][name])


def test_lora_target_modules_that_match_nothing_are_a_config_error(pixel_prior):
    with pytest.raises(ConfigError, match=r"system.guidance.lora.target_modules: .* match no layer.*to_q"):
        vsd(pixel_prior, lora=LoRAConfig(target_modules=["qkv_proj"]))
