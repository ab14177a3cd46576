"""Does a view prior use its reference? The x0 error at high noise with the right and a wrong one.

At high noise (t = 950 of 1000, SNR ≈ 0.006) the noisy target says almost nothing; only the
reference view can tell the prior which object, colours and background to produce. A prior that
uses its reference predicts x0 much better with the right reference than with a wrong one (the
reference of another example of the batch); a prior that ignores it scores both the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

HIGH_NOISE_T = 950


@dataclass(frozen=True)
class ReferenceUse:
    """Mean absolute x0 error (image units, [0, 1]) of the conditional branch at one timestep."""

    right: float
    wrong: float
    timestep: int

    def __str__(self) -> str:
        return f"x0 error at t={self.timestep}: right reference {self.right:.3f}, wrong reference {self.wrong:.3f}"


@torch.no_grad()
def reference_use(
    prior,
    reference: Float[Tensor, "B 3 H W"],
    target: Float[Tensor, "B 3 H W"],
    camera: Float[Tensor, "B 4"],
    timestep: int = HIGH_NOISE_T,
    seed: int = 0,
) -> ReferenceUse:
    """x0 error of a pixel-space :class:`~lift3d.guidance.view_prior.ViewPrior` with right and wrong references.

    Images in [0, 1]; the wrong reference of example i is the reference of example i + 1 (B ≥ 2).
    """
    if reference.shape[0] < 2:
        raise ValueError("reference_use needs a batch of at least 2 (the wrong reference is another example's)")
    g = torch.Generator().manual_seed(seed)
    x0 = target * 2 - 1
    t = torch.full((x0.shape[0],), timestep, dtype=torch.long)
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise

    def x0_error(ref: Tensor) -> float:
        context, concat = prior.conditioning(ref, camera)
        eps = prior.conditional_noise(x_t, t, context, concat)
        pred = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        return float((pred - x0).abs().mean() / 2)

    return ReferenceUse(right=x0_error(reference), wrong=x0_error(reference.roll(1, dims=0)), timestep=timestep)
