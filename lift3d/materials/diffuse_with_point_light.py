"""``diffuse-with-point-light``: Lambertian shading under a point light plus ambient light."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from lift3d.materials.base import BaseMaterial
from lift3d.registry import register


@register("diffuse-with-point-light")
class DiffuseWithPointLight(BaseMaterial):
    """``albedo * (ambient + diffuse * max(0, n . l))`` with shading augmentations (DreamFusion)."""

    requires_normal = True

    @dataclass
    class Config:
        ambient_light_color: tuple[float, float, float] = (0.1, 0.1, 0.1)
        """Ambient light intensity per channel."""
        diffuse_light_color: tuple[float, float, float] = (0.9, 0.9, 0.9)
        """Point-light intensity per channel."""
        ambient_only_steps: int = 1000
        """Training steps at the start shaded with albedo only (no light), while the shape forms."""
        textureless_prob: float = 0.5
        """Probability, per training batch after warm-up, of shading a white (textureless) surface."""
        albedo_prob: float = 0.2
        """Probability, per training batch after warm-up, of showing albedo only."""
        soft_shading: bool = False
        """Add a random light intensity split (Magic3D soft shading)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.register_buffer("ambient", torch.tensor(cfg.ambient_light_color), persistent=False)
        self.register_buffer("diffuse", torch.tensor(cfg.diffuse_light_color), persistent=False)
        self.global_step = 0
        self.shading: Literal["diffuse", "albedo", "textureless"] = "diffuse"

    def update_step(self, global_step: int) -> None:
        self.global_step = global_step

    def choose_shading(self) -> None:
        """Pick the shading of the next training batch (called once per batch by the renderer)."""
        if self.global_step < self.cfg.ambient_only_steps:
            self.shading = "albedo"
            return
        u = float(torch.rand(()))
        if u < self.cfg.textureless_prob:
            self.shading = "textureless"
        elif u < self.cfg.textureless_prob + self.cfg.albedo_prob:
            self.shading = "albedo"
        else:
            self.shading = "diffuse"

    def needs_normal_now(self) -> bool:
        return not (self.training and self.shading == "albedo")

    def forward(self, features, normal, points, light_position):
        albedo = features[:, :3].clamp(0, 1)
        shading = self.shading if self.training else "diffuse"
        if shading == "albedo":
            return albedo
        ambient, diffuse = self.ambient, self.diffuse
        if self.cfg.soft_shading and self.training:
            ambient_level = float(torch.empty(()).uniform_(0.1, 0.9))
            ambient = torch.full_like(self.ambient, ambient_level)
            diffuse = torch.full_like(self.diffuse, 1 - ambient_level)
        light_dir = F.normalize(light_position - points, dim=-1)
        lambert = (normal * light_dir).sum(-1, keepdim=True).clamp(min=0)
        colour = ambient + diffuse * lambert
        if shading == "textureless":
            return colour.clamp(0, 1)
        return (albedo * colour).clamp(0, 1)
