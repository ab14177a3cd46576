"""``zero123-guidance``: Score Distillation Sampling with a view-conditioned prior (Zero-1-to-3).

The prior sees the reference image (its image embedding and, concatenated to the UNet's input,
its pixels or VAE latent) and the camera of each render relative to the reference camera, and
scores how well the render looks like the object from there. One path for the bundled pixel
prior and for latent Zero123 / Stable Zero123 checkpoints in diffusers layout. The reference's
embedding and concatenated image are computed once, in :meth:`set_reference`.

Loss as for text SDS: ``sum(stopgrad(g) * x) / B`` with ``g = w(t) * (eps_hat - eps)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.config import Scheduled
from lift3d.data.batch import CameraBatch
from lift3d.errors import PriorError
from lift3d.guidance.base import BaseViewGuidance, GuidanceOutput
from lift3d.guidance.noise_prediction import guard_finite
from lift3d.guidance.prior_path import resolve_prior_path
from lift3d.guidance.relative_camera import CONVENTIONS, relative_camera_features
from lift3d.guidance.sds import SDSWeighting, encode_renders, timestep_range, weighted_residual
from lift3d.guidance.traced_unet import TraceDtype
from lift3d.guidance.view_prior import ViewPrior, load_view_prior
from lift3d.registry import register


@register("zero123-guidance")
class Zero123Guidance(BaseViewGuidance):
    loss_names = ("sds",)

    @dataclass
    class Config:
        pretrained_model_name_or_path: str = "bundled:view"
        """View-conditioned prior in diffusers layout (Zero123 port), or ``bundled:view``."""
        guidance_scale: float = 3.0
        """Classifier-free guidance scale (threestudio's zero123 preset: 3)."""
        camera_convention: Literal["auto", "lift3d", "zero123", "stable-zero123"] = "auto"
        """How the relative camera is written; ``auto`` reads it from the prior's
        ``cc_projection/config.json`` (``lift3d`` when absent)."""
        min_step_percent: Scheduled = 0.02
        """Lowest timestep sampled, as a fraction of the prior's training timesteps (may be scheduled)."""
        max_step_percent: Scheduled = 0.98
        """Highest timestep sampled (may be scheduled, e.g. [[0, 0.85], [200, 0.5]])."""
        weighting: SDSWeighting = "sds"
        """w(t): ``sds`` 1 - alpha_bar, ``uniform`` 1, ``fantasia3d`` sqrt(alpha_bar) (1 - alpha_bar),
        ``x0`` sqrt((1 - alpha_bar) / alpha_bar) (the gradient is x0 - x0_hat, the same weight at every t)."""
        grad_clip: Optional[Scheduled] = None
        """Clamp each element of w(t)(eps_hat - eps) to [-grad_clip, grad_clip]; null for none."""
        max_nonfinite_fraction: float = 0.0
        """Largest fraction of NaN/inf elements in the prior's noise prediction a step tolerates."""
        cpu_trace_dtype: TraceDtype = "auto"
        """What the frozen prior's traced calls compute in on a CPU: ``auto`` is bfloat16 where
        the CPU does it natively (AMX or AVX512-BF16), else float32."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.prior: ViewPrior = load_view_prior(resolve_prior_path(cfg.pretrained_model_name_or_path))
        self.prior.set_trace_dtype(cfg.cpu_trace_dtype)
        convention = self.prior.camera_convention if cfg.camera_convention == "auto" else cfg.camera_convention
        if convention not in CONVENTIONS:
            raise PriorError(f"the prior at {self.prior.path} names camera convention {convention!r}; "
                             f"set system.guidance.camera_convention to one of {', '.join(CONVENTIONS)}")
        self.convention = convention
        self.global_step = 0
        self.last_nonfinite_fraction = 0.0
        self._embedding: Tensor | None = None
        self._concat: Tensor | None = None
        self._reference_camera: tuple[float, float, float] | None = None

    def update_step(self, global_step: int) -> None:
        self.global_step = global_step

    def _to(self, device: torch.device) -> None:
        self.prior.to(device)

    @torch.no_grad()
    def set_reference(self, rgb: Float[Tensor, "1 H W 3"], camera: CameraBatch) -> None:
        self._to(rgb.device)
        image = rgb.permute(0, 3, 1, 2).float()
        self._embedding = self.prior.image_embedding(image)
        self._concat = self.prior.encode_reference(image)
        self._reference_camera = (float(camera.elevation[0]), float(camera.azimuth[0]), float(camera.distance[0]))

    def relative_camera(self, batch: CameraBatch) -> Float[Tensor, "B 4"]:
        """The relative camera of each render, in the prior's convention."""
        elev, azim, dist = (torch.full_like(batch.elevation, v) for v in self._reference_camera)
        return relative_camera_features(self.convention, elev, azim, dist, batch.elevation, batch.azimuth, batch.distance)

    def encode(self, rgb: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B C S S"]:
        """The UNet's input space: [-1, 1] pixels at the prior's size, or scaled VAE latents."""
        return encode_renders(rgb, self.prior.image_size, self.prior.vae)

    def forward(
        self,
        rgb: Float[Tensor, "B H W 3"],
        batch: CameraBatch,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> GuidanceOutput:
        if self._embedding is None:
            raise RuntimeError("zero123-guidance: call set_reference() with the input image before scoring renders")
        x = self.encode(rgb)
        b = x.shape[0]
        lo, hi = timestep_range(self.cfg.min_step_percent, self.cfg.max_step_percent, self.prior.alphas_cumprod.shape[0], self.global_step)
        if t is None:
            t = torch.randint(lo, hi + 1, (b,), device=x.device, dtype=torch.long)
        if noise is None:
            noise = torch.randn_like(x)
        a = self.prior.alphas_cumprod.to(x.device)[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            camera = self.relative_camera(batch).to(x.device)
            context = self.prior.context(self._embedding.expand(b, -1), camera)
            concat = self._concat.expand(b, -1, -1, -1)
            noisy = a.sqrt() * x.detach() + (1 - a).sqrt() * noise
            eps_hat = self.prior.predict_noise(noisy, t, context, concat, self.cfg.guidance_scale)
        eps_hat, self.last_nonfinite_fraction = guard_finite(eps_hat, self.cfg.max_nonfinite_fraction, self.global_step, self.prior.path)
        grad = weighted_residual(self.cfg.weighting, a, eps_hat, noise, self.cfg.grad_clip, self.global_step)
        loss = (grad.detach() * x).sum() / b
        return GuidanceOutput(
            losses={"sds": loss},
            info={"grad_norm": grad.norm().item(), "t_min": float(lo), "t_max": float(hi), "t": float(t.float().mean()),
                  "nonfinite_fraction": self.last_nonfinite_fraction},
        )
