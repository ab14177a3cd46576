"""The batch of cameras that flows from the data module to the renderer and the guidance."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class CameraBatch:
    """A batch of B cameras rendering H x W images (angles in degrees)."""

    rays_o: Float[Tensor, "B H W 3"]
    """Ray origins in world space."""
    rays_d: Float[Tensor, "B H W 3"]
    """Unit ray directions in world space."""
    c2w: Float[Tensor, "B 4 4"]
    """Camera-to-world matrices (OpenGL convention)."""
    mvp: Float[Tensor, "B 4 4"]
    """World-to-clip matrices (projection @ world-to-camera)."""
    elevation: Float[Tensor, "B"]
    azimuth: Float[Tensor, "B"]
    distance: Float[Tensor, "B"]
    fovy: Float[Tensor, "B"]
    light_position: Float[Tensor, "B 3"]
    """Point-light positions in world space."""
    index: Int[Tensor, "B"]
    """Index of each camera in its evaluation set (0 for training cameras)."""

    @property
    def height(self) -> int:
        return self.rays_o.shape[1]

    @property
    def width(self) -> int:
        return self.rays_o.shape[2]

    @property
    def size(self) -> int:
        return self.rays_o.shape[0]
