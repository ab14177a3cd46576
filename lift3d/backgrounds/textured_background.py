"""``textured-background``: a small learned texture over the sphere of ray directions (SJC).

The texture (``n_output_dims`` channels, ``height`` x ``width``) is read by the direction's
longitude and latitude (z up, as lift3d's cameras), bilinearly. With ``n_output_dims`` equal to a
latent prior's channel count and ``activation: none`` it is the background of latent rendering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from lift3d.backgrounds.base import BaseBackground
from lift3d.registry import register


@register("textured-background")
class TexturedBackground(BaseBackground):
    @dataclass
    class Config:
        n_output_dims: int = 3
        """Channels (3: RGB; 4: a Stable-Diffusion latent)."""
        height: int = 32
        """Texture rows (latitude)."""
        width: int = 64
        """Texture columns (longitude)."""
        activation: Literal["sigmoid", "none"] = "sigmoid"
        """sigmoid: colours in [0, 1]; none: unbounded features (latents)."""
        init_value: float = 0.0
        """Initial raw value of every texel (sigmoid(0) = 0.5 grey)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.n_output_dims = cfg.n_output_dims
        self.texture = nn.Parameter(torch.full((1, cfg.n_output_dims, cfg.height, cfg.width), float(cfg.init_value)))

    def forward(self, dirs):
        d = F.normalize(dirs, dim=-1)
        lon = torch.atan2(d[..., 1], d[..., 0]) / math.pi  # [-1, 1]
        lat = -torch.asin(d[..., 2].clamp(-1, 1)) / (math.pi / 2)  # row 0 is straight up
        grid = torch.stack([lon, lat], dim=-1).reshape(1, -1, 1, 2)
        out = F.grid_sample(self.texture, grid.to(self.texture.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        out = out.view(self.cfg.n_output_dims, *dirs.shape[:-1]).movedim(0, -1)
        return torch.sigmoid(out) if self.cfg.activation == "sigmoid" else out
