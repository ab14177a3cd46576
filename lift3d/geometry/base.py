"""Interface of geometry modules: density (or SDF) and surface features at points."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule


@dataclass
class GeometryOutput:
    """What a geometry says about a batch of points."""

    density: Float[Tensor, "N"]
    """Volume density (>= 0)."""
    features: Float[Tensor, "N C"]
    """Surface features, e.g. albedo in [0, 1] (C = 3)."""
    normal: Float[Tensor, "N 3"] | None = None
    """Unit outward normals, when requested."""


class BaseImplicitGeometry(Lift3DModule):
    """A field over the scene box ``[-radius, radius]^3``."""

    radius: float = 1.0

    def forward(self, points: Float[Tensor, "N 3"], with_normal: bool = False) -> GeometryOutput:
        raise NotImplementedError

    def forward_density(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N"]:
        raise NotImplementedError

    def contract(self, points: Tensor) -> Tensor:
        """Scene-box points mapped to [0, 1]^3."""
        return (points / self.radius + 1.0) * 0.5

    @torch.no_grad()
    def density_grid(self, resolution: int, chunk: int = 262144, bbox: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Density on a regular ``resolution^3`` grid of cell centres, indexed [x, y, z].

        The grid spans ``bbox`` (min corner, max corner) when given, else the scene box.
        """
        lo, hi = bbox if bbox is not None else (torch.full((3,), -self.radius), torch.full((3,), self.radius))
        t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
        axes = [lo[i] + t * (hi[i] - lo[i]) for i in range(3)]
        pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        device = next(self.parameters()).device
        out = [self.forward_density(p.to(device)) for p in pts.split(chunk)]
        return torch.cat(out).reshape(resolution, resolution, resolution)
