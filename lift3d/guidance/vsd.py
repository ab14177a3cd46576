"""``vsd-guidance``: Variational Score Distillation (ProlificDreamer, Wang et al., 2023).

SDS pulls every render towards the prior's classifier-free-guided noise estimate against the
*added* noise; VSD replaces the added noise by a learned estimate of the current scene's own
render distribution: a LoRA copy of the prior conditioned on the camera
(:mod:`lift3d.guidance.camera_lora`). Per step, at one timestep t and noise ε for both:

* ``vsd``: the surrogate ``sum(stopgrad(g) * x) / B`` with ``g = w(t) (ε̂_pretrained,cfg − ε̂_lora)``,
  so its gradient with respect to the prior's input ``x`` is ``g / B``; ε̂_lora is the LoRA
  model's estimate for the same noisy input, camera and prompt (its own guidance scale,
  ``lora_guidance_scale``, 1 by default: no guidance), converted to ε from its prediction type;
* ``lora``: the LoRA model's diffusion loss on the detached renders, at its own timestep drawn
  uniformly over all of the prior's timesteps and with the camera dropped (zeros) for
  ``lora_camera_dropout`` of the examples: ``mean((prediction − target)²)``, the target being ε or
  v (``lora_prediction_type``).

Only the ``lora`` loss reaches the LoRA layers and camera MLP (the ``vsd`` gradient is taken
without a graph through the UNet), and only ``vsd`` reaches the scene. Give the LoRA its own
learning rate with ``system.optimizer.param_lrs.guidance.lora``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.data.batch import CameraBatch
from lift3d.errors import PriorError
from lift3d.guidance.camera_lora import CameraConditionedLoRA, LoRAConfig, flatten_camera
from lift3d.guidance.noise_prediction import guard_finite, to_epsilon
from lift3d.guidance.sds import DiffusersSDSGuidance, SDSWeighting, TextPriorGuidanceConfig, weighted_residual
from lift3d.registry import register


def diffusion_target(x0: Tensor, noise: Tensor, alphas_cumprod_t: Tensor, prediction_type: str) -> Tensor:
    """What a model of ``prediction_type`` is trained to output for ``x_t = √ᾱ x0 + √(1−ᾱ) ε``."""
    if prediction_type == "epsilon":
        return noise
    return alphas_cumprod_t.sqrt() * noise - (1 - alphas_cumprod_t).sqrt() * x0  # v


@register("vsd-guidance")
class VSDGuidance(DiffusersSDSGuidance):
    """The frozen prior (CFG, view-dependent prompts) against a camera-conditioned LoRA of it."""

    loss_names = ("vsd", "lora")
    trainable_modules = ("lora.layers", "lora.camera")

    @dataclass
    class Config(TextPriorGuidanceConfig):
        guidance_scale: float = 7.5
        """Classifier-free guidance scale of the frozen prior (VSD works at ordinary scales)."""
        weighting: SDSWeighting = "sds"
        """w(t): ``sds`` 1 - alpha_bar, ``uniform`` 1, ``fantasia3d`` sqrt(alpha_bar) (1 - alpha_bar),
        ``x0`` sqrt((1 - alpha_bar) / alpha_bar) (the gradient is x0 - x0_hat, the same weight at every t)."""
        lora: LoRAConfig = field(default_factory=LoRAConfig)
        """The LoRA model: rank, alpha, target layers, shared or copied UNet, camera conditioning."""
        lora_prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
        """What the LoRA model is trained to predict (ProlificDreamer trains v on Stable Diffusion); its
        output is turned into ε for the VSD gradient."""
        lora_guidance_scale: float = 1.0
        """Classifier-free guidance scale of the LoRA model's estimate (1: the conditional estimate only)."""
        lora_camera_dropout: float = 0.1
        """Fraction of the LoRA's training examples whose camera is dropped (zeros)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        if self.camera_conditioned:
            raise PriorError(
                f"vsd-guidance adds its own camera embedding to the prior's UNet, but the prior at {self.prior.path} is "
                "camera-conditioned already; use a text prior without camera conditioning (e.g. bundled:text)"
            )
        self.lora = CameraConditionedLoRA(cfg.lora, self.prior.unet)

    def _ensure_device(self, device: torch.device) -> None:
        if self._device != device:
            super()._ensure_device(device)
            unet, dtype = self.lora.unet, self.prior.dtype
            if unet is not self.prior.unet:  # the LoRA's own copy follows the prior
                if unet.conv_in.weight.dtype != dtype:
                    unet.to(dtype=dtype)
                unet.to(device)

    def lora_epsilon(self, noisy: Tensor, t: Tensor, cond: Tensor, uncond: Tensor, camera: Tensor) -> Tensor:
        """ε̂_lora: the LoRA model's estimate at ``noisy`` (guided by ``lora_guidance_scale``), as noise."""
        s = self.cfg.lora_guidance_scale
        a = self.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        if s == 1.0:
            return to_epsilon(self.lora(noisy, t, cond, camera), noisy, a, self.cfg.lora_prediction_type)
        out = self.lora(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([cond, uncond]), torch.cat([camera, camera]))
        eps_cond, eps_uncond = to_epsilon(out, torch.cat([noisy, noisy]), torch.cat([a, a]), self.cfg.lora_prediction_type).chunk(2)
        return eps_uncond + s * (eps_cond - eps_uncond)

    def vsd_gradient(self, x: Tensor, cond: Tensor, uncond: Tensor, camera: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """w(t) (ε̂_pretrained,cfg − ε̂_lora) for given timesteps and noise, clipped when ``grad_clip`` is set."""
        a = self.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            noisy = a.sqrt() * x + (1 - a).sqrt() * noise
            eps_pretrained = self.predict_noise(noisy, t, cond, uncond)
            eps_lora = self.lora_epsilon(noisy, t, cond, uncond, camera)
        eps_pretrained, frac_pre = guard_finite(eps_pretrained, self.cfg.max_nonfinite_fraction, self.global_step, self.prior.path)
        eps_lora, frac_lora = guard_finite(eps_lora, self.cfg.max_nonfinite_fraction, self.global_step, f"{self.prior.path} (LoRA)")
        self.last_nonfinite_fraction = max(frac_pre, frac_lora)
        return weighted_residual(self.cfg.weighting, a, eps_pretrained, eps_lora, self.cfg.grad_clip, self.global_step)

    def lora_loss(self, x: Float[Tensor, "B C S S"], cond: Tensor, camera: Float[Tensor, "B 16"]) -> Tensor:
        """The LoRA model's diffusion loss on (detached) prior inputs ``x``, at its own timesteps."""
        b = x.shape[0]
        t = torch.randint(0, self.prior.num_train_timesteps, (b,), device=x.device, dtype=torch.long)
        noise = torch.randn_like(x)
        a = self.prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x + (1 - a).sqrt() * noise
        keep = (torch.rand(b, device=x.device) >= self.cfg.lora_camera_dropout).to(camera.dtype)
        prediction = self.lora(noisy, t, cond, camera * keep[:, None])
        return F.mse_loss(prediction, diffusion_target(x, noise, a, self.cfg.lora_prediction_type))

    def distillation_gradient(self, x: Tensor, cond: Tensor, uncond: Tensor, t: Tensor, noise: Tensor, batch: CameraBatch) -> Tensor:
        return self.vsd_gradient(x, cond, uncond, self.camera_of(batch, x), t, noise)

    def extra_losses(self, x: Tensor, cond: Tensor, batch: CameraBatch) -> dict[str, Tensor]:
        return {"lora": self.lora_loss(x, cond, self.camera_of(batch, x))}

    @staticmethod
    def camera_of(batch: CameraBatch, like: Tensor) -> Float[Tensor, "B 16"]:
        return flatten_camera(batch.c2w.to(like.device, torch.float32))
