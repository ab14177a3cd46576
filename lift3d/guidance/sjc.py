"""``sjc-guidance``: Score Jacobian Chaining (Wang et al., 2023) with perturb-and-average scoring.

The denoiser is never asked about a clean render. In the variance-exploding form a timestep t
has the noise scale ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``; the render ``y`` is perturbed
to ``z = y + sigma * n`` and the UNet sees ``z / sqrt(1 + sigma^2)``, which is exactly the
variance-preserving noisy sample ``sqrt(alpha_bar) y + sqrt(1 - alpha_bar) n`` a DDPM prior was
trained on. Its denoised estimate is ``D = z - sigma * eps_hat``, and the score of ``y`` is
estimated (times sigma) by

* ``variance_reduction: true`` (SJC's default): ``(D - y) / sigma = n - eps_hat``;
* ``false``: ``(D - z) / sigma = -eps_hat``, the plain score at ``z`` (its expectation over n is
  the same; it is noisier).

The loss ascends that score: its gradient with respect to ``y`` is ``-score / B`` (so with
variance reduction it equals DreamFusion's SDS gradient with w(t) = 1). Classifier-free guidance:
SJC's code mixes the denoised outputs, ``D_uncond + s (D_cond - D_uncond)``; D is affine in
eps_hat for fixed z and sigma, so that is ``eps_uncond + s (eps_cond - eps_uncond)`` inside D, the
same formula as DreamFusion's: the scale means the same number in both.

A latent prior is scored on the render itself when the render has the latent channel count
(latent rendering: no VAE encoder in the loop; images to save are decoded); a render with 3
channels is encoded by the VAE, as SDS does. A pixel prior (the bundled one) scores the render
resized to its size and mapped to [-1, 1]. sigma's range is that of the timesteps in
[min_step_percent, max_step_percent]; within it a timestep is drawn uniformly (as SDS) or log(sigma)
uniformly (``sigma_sampling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.config import resolve
from lift3d.errors import RunError
from lift3d.guidance.noise_prediction import guard_finite
from lift3d.guidance.sds import DiffusersSDSGuidance, TextPriorGuidanceConfig, encode_renders
from lift3d.registry import register


@register("sjc-guidance")
class SJCGuidance(DiffusersSDSGuidance):
    """Perturb-and-average scoring; shares the prior loading and CFG noise prediction of SDS."""

    loss_names = ("sds",)
    """Named like SDS's loss (score distillation), so a DreamFusion preset swaps guidance by one override."""

    @dataclass
    class Config(TextPriorGuidanceConfig):
        variance_reduction: bool = True
        """Score by (D - y) / sigma = n - eps_hat (SJC's default) instead of (D - z) / sigma = -eps_hat."""
        sigma_sampling: Literal["timestep", "log_sigma"] = "timestep"
        """How sigma is drawn in its range (the step-percent bounds): ``timestep``, a timestep uniformly
        (as SDS); ``log_sigma``, log(sigma) uniformly, then the timestep of the nearest sigma (each
        octave of noise equally often, as variance-exploding samplers space their levels)."""

    @property
    def latent_channels(self) -> int | None:
        return self.prior.vae.config.latent_channels if self.prior.vae is not None else None

    def to_prior_space(self, render: Float[Tensor, "B H W C"]) -> Float[Tensor, "B K S S"]:
        """What the UNet denoises: the render itself when it is a latent render, else as SDS encodes it."""
        if self.latent_channels is not None and render.shape[-1] == self.latent_channels:
            y = render.permute(0, 3, 1, 2)
            size = self.prior.sample_size
            if y.shape[-1] != size or y.shape[-2] != size:
                y = F.interpolate(y, (size, size), mode="bilinear", align_corners=False, antialias=y.shape[-1] > size)
            return y
        if render.shape[-1] != 3:
            want = f"3 (colours) or {self.latent_channels} (latents)" if self.latent_channels else "3 (a pixel prior)"
            raise RunError(f"the render has {render.shape[-1]} channels but the prior at {self.prior.path} takes {want}; "
                           "set system.geometry.n_feature_dims, the material's and the background's n_output_dims to match")
        return encode_renders(render, self.prior.image_size, self.prior.vae)

    def sample_timesteps(self, lo: int, hi: int, b: int, device: torch.device) -> Tensor:
        """``b`` timesteps in [lo, hi], drawn as ``sigma_sampling`` says."""
        if self.cfg.sigma_sampling == "timestep":
            return super().sample_timesteps(lo, hi, b, device)
        ts = torch.arange(lo, hi + 1, device=device)
        log_sigma = self.sigma(ts).log()
        target = log_sigma[0] + torch.rand(b, device=device) * (log_sigma[-1] - log_sigma[0])
        return ts[(log_sigma[None, :] - target[:, None]).abs().argmin(dim=1)]

    def sigma(self, t: Tensor) -> Tensor:
        a = self.prior.alphas_cumprod[t]
        return ((1 - a) / a).sqrt()

    def paas_score(self, y: Tensor, cond: Tensor, uncond: Tensor, t: Tensor, noise: Tensor, camera: Tensor | None = None) -> Tensor:
        """sigma times the perturb-and-average score estimate of ``y`` (see the module docstring)."""
        sigma = self.sigma(t).view(-1, 1, 1, 1)
        z = y + sigma * noise
        with torch.no_grad():
            eps_hat = self.predict_noise(z / (1 + sigma**2).sqrt(), t, cond, uncond, camera)
        eps_hat, self.last_nonfinite_fraction = guard_finite(eps_hat, self.cfg.max_nonfinite_fraction, self.global_step, self.prior.path)
        denoised = z - sigma * eps_hat
        score = (denoised - y) / sigma if self.cfg.variance_reduction else (denoised - z) / sigma
        if self.cfg.grad_clip is not None:
            clip = resolve(self.cfg.grad_clip, self.global_step)
            score = score.clamp(-clip, clip)
        return score

    def encode(self, rgb: Float[Tensor, "B H W C"]) -> Float[Tensor, "B K S S"]:
        return self.to_prior_space(rgb)

    def sds_gradient(self, x: Tensor, cond: Tensor, uncond: Tensor, t: Tensor, noise: Tensor, camera: Tensor | None = None) -> Tensor:
        """The loss ascends the score: SDS's forward forms its loss from minus the PAAS score."""
        return -self.paas_score(x, cond, uncond, t, noise, camera)

    def step_info(self, t: Tensor) -> dict[str, float]:
        return {"sigma": float(self.sigma(t).mean())}

    @torch.no_grad()
    def to_display(self, render: Float[Tensor, "B H W C"]) -> Float[Tensor, "B H W 3"]:
        """Colours in [0, 1] of a render: latent renders are decoded by the VAE, at the render's size."""
        if self.latent_channels is None or render.shape[-1] != self.latent_channels:
            return render
        vae = self.prior.vae
        latents = render.permute(0, 3, 1, 2).to(next(vae.parameters()).device, vae.dtype) / vae.config.scaling_factor
        image = (vae.decode(latents).sample.float() + 1) / 2
        image = F.interpolate(image, render.shape[1:3], mode="bilinear", align_corners=False, antialias=True)
        return image.clamp(0, 1).permute(0, 2, 3, 1).to(render.device)
