"""Pieces shared by the bundled priors' training scripts: schedule, EMA, sample grids."""

from __future__ import annotations

import math

import numpy as np
import torch


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
