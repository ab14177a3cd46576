"""``no-material``: the features are the colour."""

from __future__ import annotations

from lift3d.materials.base import BaseMaterial
from lift3d.registry import register


@register("no-material")
class NoMaterial(BaseMaterial):
    def forward(self, features, normal, points, light_position):
        return features[:, :3].clamp(0, 1)
