"""``solid-color``: one colour, optionally learned, with random-colour augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from lift3d.backgrounds.base import BaseBackground
from lift3d.registry import register


@register("solid-color")
class SolidColorBackground(BaseBackground):
    @dataclass
    class Config:
        color: tuple[float, float, float] = (1.0, 1.0, 1.0)
        """Background colour (RGB in [0, 1])."""
        learned: bool = False
        """Optimise the colour with the scene."""
        random_aug: bool = False
        """During training, replace the colour by a random one with probability ``random_aug_prob``."""
        random_aug_prob: float = 0.5
        """Probability of the random colour, per training image."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        colour = torch.tensor(cfg.color, dtype=torch.float32)
        if cfg.learned:
            self.color = nn.Parameter(colour)
        else:
            self.register_buffer("color", colour)

    def forward(self, dirs):
        b = dirs.shape[0]
        colour = self.color.clamp(0, 1).expand(b, 3)
        if self.training and self.cfg.random_aug:
            rand = torch.rand(b, 3, device=dirs.device)
            use = (torch.rand(b, 1, device=dirs.device) < self.cfg.random_aug_prob)
            colour = torch.where(use, rand, colour)
        return colour[:, None, None, :].expand(*dirs.shape[:-1], 3)
