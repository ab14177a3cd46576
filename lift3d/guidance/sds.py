"""``diffusers-sds-guidance``: Score Distillation Sampling (DreamFusion) over any diffusers-layout prior.

A prior with a ``vae/`` is a latent prior: the render is resized to the VAE's input size and
encoded. Without one it is a pixel prior: the render is resized to the UNet's sample size and
mapped to [-1, 1]. Either way ``x`` is what the UNet denoises, and the loss is formed as
``sum(stopgrad(g) * x) / B`` with ``g = w(t) * (eps_hat - eps)``, so its gradient with respect
to ``x`` is exactly ``g / B``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.config import Scheduled, resolve
from lift3d.data.batch import CameraBatch
from lift3d.errors import PriorError
from lift3d.guidance.base import BaseGuidance, GuidanceOutput
from lift3d.guidance.diffusers_prior import FrozenPrior, load_frozen_prior
from lift3d.guidance.noise_prediction import guard_finite, to_epsilon
from lift3d.guidance.prior_path import resolve_prior_path
from lift3d.guidance.traced_unet import TraceDtype
from lift3d.priors.text_prior.camera import RAYMAP_CHANNELS, camera_raymap, is_camera_conditioned
from lift3d.prompts.base import PromptEmbeddings
from lift3d.registry import register


SDSWeighting = Literal["sds", "uniform", "fantasia3d", "x0"]
"""w(t) of score distillation: ``sds`` 1 - alpha_bar (DreamFusion), ``uniform`` 1, ``fantasia3d``
sqrt(alpha_bar) (1 - alpha_bar), ``x0`` sqrt((1 - alpha_bar) / alpha_bar), which makes the gradient
x0 - x0_hat: every timestep pulls the render towards the prior's denoised estimate with the same
weight. DreamFusion's weighting gives that residual the weight sqrt(alpha_bar (1 - alpha_bar)): on a
cosine schedule 0.08 at t = 950, where a view prior already predicts the novel view from its
reference, against 0.5 at t = 500."""


def sds_weight(kind: str, alphas_cumprod_t: Tensor) -> Tensor:
    """w(t) for the weighting ``kind`` (see :data:`SDSWeighting`)."""
    if kind == "sds":
        return 1 - alphas_cumprod_t
    if kind == "uniform":
        return torch.ones_like(alphas_cumprod_t)
    if kind == "fantasia3d":
        return alphas_cumprod_t**0.5 * (1 - alphas_cumprod_t)
    if kind == "x0":
        return ((1 - alphas_cumprod_t) / alphas_cumprod_t).sqrt()
    raise ValueError(kind)


def encode_renders(rgb: Float[Tensor, "B H W 3"], image_size: int, vae=None) -> Float[Tensor, "B C S S"]:
    """Renders in [0, 1] as a UNet's input: resized to the prior's image size, mapped to [-1, 1],
    and for a latent prior encoded by its VAE (a posterior sample, times the scaling factor)."""
    x = rgb.permute(0, 3, 1, 2)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > image_size)
    x = x * 2 - 1
    if vae is None:
        return x
    posterior = vae.encode(x.to(vae.dtype)).latent_dist
    return (posterior.sample() * vae.config.scaling_factor).float()


def weighted_residual(weighting: str, alphas_cumprod_t: Tensor, eps_hat: Tensor, noise: Tensor, grad_clip, step: int) -> Tensor:
    """The SDS gradient w(t) (eps_hat - eps), clamped to ±``grad_clip`` (resolved at ``step``) when set."""
    grad = sds_weight(weighting, alphas_cumprod_t) * (eps_hat - noise)
    if grad_clip is not None:
        clip = resolve(grad_clip, step)
        grad = grad.clamp(-clip, clip)
    return grad


def timestep_range(min_step_percent, max_step_percent, num_train_timesteps: int, step: int) -> tuple[int, int]:
    """(lowest, highest) timestep to sample at ``step``, from scheduled fractions of the prior's timesteps."""
    n = num_train_timesteps
    lo = int(resolve(min_step_percent, step) * n)
    hi = int(resolve(max_step_percent, step) * n)
    return max(0, min(lo, n - 1)), max(0, min(max(hi, lo), n - 1))


@dataclass
class TextPriorGuidanceConfig:
    """Settings every guidance by a text-conditioned prior shares (SDS, SJC)."""

    pretrained_model_name_or_path: str = "bundled:text"
    """Prior directory in diffusers layout (or ``bundled:text``)."""
    guidance_scale: float = 100.0
    """Classifier-free guidance scale: eps_uncond + scale * (eps_cond - eps_uncond)."""
    min_step_percent: Scheduled = 0.02
    """Lowest timestep sampled, as a fraction of the prior's training timesteps."""
    max_step_percent: Scheduled = 0.98
    """Highest timestep sampled; schedule it to anneal, e.g. [[0, 0.98], [5000, 0.5]]."""
    grad_clip: Optional[Scheduled] = None
    """Clamp each element of the gradient to [-grad_clip, grad_clip]; null for none."""
    half_precision: bool = False
    """Run the prior in float16 (CUDA only)."""
    cpu_trace_dtype: TraceDtype = "auto"
    """What the frozen prior's traced calls compute in on a CPU: ``auto`` is bfloat16 where the
    CPU does it natively (AMX or AVX512-BF16; about 20 % off the bundled main job's call at a
    relative error of 4e-3), else float32."""
    max_nonfinite_fraction: float = 0.0
    """Largest fraction of NaN/inf elements in the prior's noise prediction a step tolerates
    (they are zeroed, and the fraction is logged as ``train/nonfinite_fraction``); above it
    the run stops with an error. 0: any non-finite value stops the run."""


@register("diffusers-sds-guidance")
class DiffusersSDSGuidance(BaseGuidance):
    loss_names = ("sds",)

    @dataclass
    class Config(TextPriorGuidanceConfig):
        weighting: SDSWeighting = "sds"
        """w(t): ``sds`` 1 - alpha_bar, ``uniform`` 1, ``fantasia3d`` sqrt(alpha_bar) (1 - alpha_bar),
        ``x0`` sqrt((1 - alpha_bar) / alpha_bar) (the gradient is x0 - x0_hat, the same weight at every t)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.prior: FrozenPrior = load_frozen_prior(resolve_prior_path(cfg.pretrained_model_name_or_path))
        self.prior.set_trace_dtype(cfg.cpu_trace_dtype)
        self.camera_conditioned = is_camera_conditioned(self.prior.path)
        channels = (self.prior.vae.config.latent_channels if self.prior.vae is not None else 3)
        expected = channels + (RAYMAP_CHANNELS if self.camera_conditioned else 0)
        if self.prior.in_channels != expected:
            what = f"a camera-conditioned text prior needs {channels} + {RAYMAP_CHANNELS} (its ray map)" if self.camera_conditioned \
                else f"a text prior needs {channels}"
            raise PriorError(
                f"prior's UNet takes {self.prior.in_channels} input channels but {what}; "
                "is this an image-conditioned prior? use its own guidance"
            )
        self.global_step = 0
        self.last_nonfinite_fraction = 0.0
        self._device = None

    def update_step(self, global_step: int) -> None:
        self.global_step = global_step

    def timestep_range(self) -> tuple[int, int]:
        return timestep_range(self.cfg.min_step_percent, self.cfg.max_step_percent, self.prior.num_train_timesteps, self.global_step)

    def _ensure_device(self, device: torch.device) -> None:
        if self._device != device:
            dtype = torch.float16 if (self.cfg.half_precision and device.type == "cuda") else torch.float32
            self.prior.to(device, dtype)
            self._device = device

    def encode(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B C S S"]:
        """The UNet's input space: VAE latents (latent prior) or [-1, 1] pixels (pixel prior)."""
        return encode_renders(rgb, self.prior.image_size, self.prior.vae)

    def prior_camera(self, batch: CameraBatch, like: Tensor) -> Float[Tensor, "B 6 S S"] | None:
        """The cameras as a camera-conditioned prior takes them (their ray maps at ``like``'s
        resolution, :func:`~lift3d.priors.text_prior.camera.camera_raymap`); None for other priors."""
        if not self.camera_conditioned:
            return None
        return camera_raymap(batch.c2w, batch.fovy, like.shape[-1]).to(like.device, like.dtype)

    def predict_noise(self, noisy: Tensor, t: Tensor, cond: Tensor, uncond: Tensor, camera: Tensor | None = None) -> Tensor:
        """Classifier-free-guided noise prediction (ε, whatever the prior predicts); ``camera``
        (:meth:`prior_camera`) goes to both branches of a camera-conditioned prior."""
        inp = torch.cat([noisy, noisy]).to(self.prior.dtype)
        emb = torch.cat([cond, uncond]).to(self.prior.dtype)
        unet_in = inp if camera is None else torch.cat([inp, torch.cat([camera, camera]).to(inp.dtype)], dim=1)
        out = self.prior.denoise(unet_in, torch.cat([t, t]), emb).float()
        if out.shape[1] == 2 * noisy.shape[1]:  # learned variance (DeepFloyd IF): keep the prediction half
            out = out[:, : noisy.shape[1]]
        a = self.prior.alphas_cumprod[torch.cat([t, t])].view(-1, 1, 1, 1)
        eps = to_epsilon(out, inp.float(), a, self.prior.prediction_type)
        eps_cond, eps_uncond = eps.chunk(2)
        return eps_uncond + self.cfg.guidance_scale * (eps_cond - eps_uncond)

    def sds_gradient(self, x: Tensor, cond: Tensor, uncond: Tensor, t: Tensor, noise: Tensor, camera: Tensor | None = None) -> Tensor:
        """w(t) * (eps_hat - eps), clipped, for given timesteps and noise."""
        a = self.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            noisy = a.sqrt() * x + (1 - a).sqrt() * noise
            eps_hat = self.predict_noise(noisy, t, cond, uncond, camera)
        eps_hat, self.last_nonfinite_fraction = guard_finite(
            eps_hat, self.cfg.max_nonfinite_fraction, self.global_step, self.prior.path
        )
        return weighted_residual(self.cfg.weighting, a, eps_hat, noise, self.cfg.grad_clip, self.global_step)

    def forward(
        self,
        rgb: Float[Tensor, "B H W C"],
        prompt: PromptEmbeddings,
        batch: CameraBatch,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> GuidanceOutput:
        self._ensure_device(rgb.device)
        x = self.encode(rgb)
        b = x.shape[0]
        lo, hi = self.timestep_range()
        if t is None:
            t = self.sample_timesteps(lo, hi, b, x.device)
        if noise is None:
            noise = torch.randn_like(x)
        cond, uncond = prompt.for_cameras(batch.elevation.to(x.device), batch.azimuth.to(x.device))
        grad = self.distillation_gradient(x.detach(), cond, uncond, t, noise, batch)
        loss = (grad.detach() * x).sum() / b
        return GuidanceOutput(
            losses={self.loss_names[0]: loss, **self.extra_losses(x.detach(), cond, batch)},
            info={"grad_norm": grad.norm().item(), "t_min": float(lo), "t_max": float(hi), "t": float(t.float().mean()),
                  "nonfinite_fraction": self.last_nonfinite_fraction, **self.step_info(t)},
        )

    def distillation_gradient(self, x: Tensor, cond: Tensor, uncond: Tensor, t: Tensor, noise: Tensor, batch: CameraBatch) -> Tensor:
        """The gradient the first loss applies to ``x`` (times the batch size): SDS's by default."""
        return self.sds_gradient(x, cond, uncond, t, noise, self.prior_camera(batch, x))

    def extra_losses(self, x: Tensor, cond: Tensor, batch: CameraBatch) -> dict[str, Tensor]:
        """Further named losses from the detached prior input ``x`` (VSD's LoRA loss); none for SDS."""
        return {}

    def sample_timesteps(self, lo: int, hi: int, b: int, device: torch.device) -> Tensor:
        """``b`` timesteps drawn uniformly in [lo, hi]."""
        return torch.randint(lo, hi + 1, (b,), device=device, dtype=torch.long)

    def step_info(self, t: Tensor) -> dict[str, float]:
        """Extra values to log for a step at timesteps ``t``."""
        return {}
