"""What a prior predicts (ε, v or x0), turned into ε in one place; and a guard on non-finite output.

A prior's ``scheduler/scheduler_config.json`` names its ``prediction_type``. With
``x_t = √ᾱ·x0 + √(1−ᾱ)·ε`` and ``v = √ᾱ·ε − √(1−ᾱ)·x0``:

* ``epsilon``: the output is ε;
* ``v_prediction``: ε = √ᾱ·v + √(1−ᾱ)·x_t (Stable Diffusion 2.x 768-v and others);
* ``sample``: ε = (x_t − √ᾱ·x0) / √(1−ᾱ) (x0-prediction).

Every guidance path that asks a prior for noise goes through :func:`to_epsilon`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lift3d.errors import PriorError, RunError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_prediction_type(prediction_type: str, where: str) -> str:
    """The prediction type, or a :class:`PriorError` naming the prior and the supported types."""
    if prediction_type not in PREDICTION_TYPES:
        raise PriorError(
            f"the prior at {where} predicts {prediction_type!r}, which lift3d cannot turn into noise; "
            f"supported prediction_type values: {', '.join(PREDICTION_TYPES)}"
        )
    return prediction_type


def to_epsilon(prediction: Tensor, x_t: Tensor, alphas_cumprod_t: Tensor, prediction_type: str) -> Tensor:
    """The noise ε implied by a prior's output at noisy input ``x_t``; ``alphas_cumprod_t`` broadcasts."""
    if prediction_type == "epsilon":
        return prediction
    a = alphas_cumprod_t.to(prediction.dtype)
    if prediction_type == "v_prediction":
        return a.sqrt() * prediction + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * prediction) / (1 - a).sqrt().clamp(min=1e-8)
    raise PriorError(f"unsupported prediction_type {prediction_type!r}; supported: {', '.join(PREDICTION_TYPES)}")


def nonfinite_fraction(x: Tensor) -> float:
    """Fraction of elements that are NaN or infinite."""
    return float((~torch.isfinite(x)).sum()) / max(x.numel(), 1)


def guard_finite(eps: Tensor, tolerance: float, step: int, prior: object) -> tuple[Tensor, float]:
    """``(eps with non-finite elements zeroed, their fraction)``; above ``tolerance`` the run stops.

    A prior that returns NaN or inf (float16 overflow, a broken checkpoint) would otherwise give
    a finite zero gradient and training would silently stop learning.
    """
    frac = nonfinite_fraction(eps)
    if frac > tolerance:
        raise RunError(
            f"the prior's noise prediction is non-finite in {frac:.1%} of elements at step {step} (prior {prior}); "
            "likely float16 overflow (set system.guidance.half_precision=false) or a broken checkpoint"
        )
    if frac > 0:
        eps = torch.where(torch.isfinite(eps), eps, torch.zeros_like(eps))
    return eps, frac
