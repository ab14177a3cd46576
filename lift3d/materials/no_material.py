"""``no-material``: the features are the colour (or, for latent rendering, the latent channels)."""

from __future__ import annotations

from dataclasses import dataclass

from lift3d.materials.base import BaseMaterial
from lift3d.registry import register


@register("no-material")
class NoMaterial(BaseMaterial):
    @dataclass
    class Config:
        n_output_dims: int = 3
        """Channels passed on: 3 (RGB), or a latent prior's channel count when rendering its latent space."""
        clamp: bool = True
        """Clamp to [0, 1] (colours); latent features are unbounded: false."""

    def __init__(self, cfg: Config | None = None) -> None:
        super().__init__(cfg if cfg is not None else self.Config())

    def forward(self, features, normal, points, light_position):
        out = features[:, : self.cfg.n_output_dims]
        return out.clamp(0, 1) if self.cfg.clamp else out

    def albedo(self, features):
        """Base colour for exports: the colour, or grey for latent features (they have no per-point colour)."""
        if self.cfg.n_output_dims != 3 or not self.cfg.clamp:
            return features.new_full((features.shape[0], 3), 0.7)
        return features[:, :3].clamp(0, 1)
