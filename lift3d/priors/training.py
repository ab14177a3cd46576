"""Pieces shared by the bundled priors' training scripts: loss, schedule, EMA, sample grids."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def epsilon_loss(pred: torch.Tensor, noise: torch.Tensor, alphas_t: torch.Tensor, snr_gamma: float | None = None) -> torch.Tensor:
    """Mean squared error of an ε-prediction over a (B, C, H, W) batch.

    With ``snr_gamma``, each sample's error is weighted by min(SNR, γ) / SNR, SNR = ᾱ / (1 − ᾱ)
    (Min-SNR-γ, Hang et al. 2023): the many nearly clean timesteps, whose noise is easy to read
    off the image, stop dominating the gradient. ``alphas_t`` is ᾱ of each sample's timestep, (B,).
    """
    if snr_gamma is None:
        return F.mse_loss(pred, noise)
    snr = alphas_t / (1 - alphas_t)
    weight = snr.clamp(max=snr_gamma) / snr
    return (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()


def prediction_target(x0: torch.Tensor, noise: torch.Tensor, alphas_t: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What a UNet of ``prediction_type`` should output for ``x_t = √ᾱ·x0 + √(1−ᾱ)·ε``.

    ``epsilon``: ε; ``sample``: x0; ``v_prediction``: v = √ᾱ·ε − √(1−ᾱ)·x0. ``alphas_t`` broadcasts
    against the images, e.g. (B, 1, 1, 1).
    """
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return alphas_t.sqrt() * noise - (1 - alphas_t).sqrt() * x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}; use epsilon, sample or v_prediction")


def keep_training(step: int, total: int, start: int, stop_after: int | None) -> bool:
    """Whether a training loop that began this invocation at ``start`` takes another step."""
    return step < total and (stop_after is None or step < start + stop_after)


def warmup_cosine_lr(step: int, total: int, base: float, warmup: int = 200, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``base`` to ``floor * base``."""
    ramp = min(1.0, (step + 1) / warmup)
    return base * ramp * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total)))


@torch.no_grad()
def ema_update(pairs: list[tuple[torch.nn.Module, torch.nn.Module]], step: int, max_decay: float = 0.999) -> None:
    """Move each EMA module (second) toward its trained module (first); decay warms up with the step."""
    decay = min(max_decay, (1 + step) / (10 + step))
    for src, dst in pairs:
        for p_ema, p in zip(dst.parameters(), src.parameters()):
            p_ema.lerp_(p, 1 - decay)


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    """(B, 3, H, W) images in [0, 1] as one uint8 (rows*H, cols*W, 3) grid, blank cells white."""
    b, c, h, w = images.shape
    rows = math.ceil(b / cols)
    grid = torch.ones(rows * cols, c, h, w)
    grid[:b] = images
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    return (grid.numpy() * 255).round().astype(np.uint8)
