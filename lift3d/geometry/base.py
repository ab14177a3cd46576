"""Interface of geometry modules.

Two kinds answer the same question, "what colour features does the surface have at these points":
an implicit geometry (a density field, rendered by ray marching) and an explicit one (a triangle
mesh it extracts itself, rendered by rasterization).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule

if TYPE_CHECKING:
    from lift3d.geometry.triangle_mesh import TriangleMesh


def cell_centres(lo: Tensor, hi: Tensor, resolution: int) -> Float[Tensor, "R R R 3"]:
    """Centres of the cells of a regular ``resolution``³ grid over the box ``[lo, hi]``, indexed [x, y, z]."""
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    axes = [lo[i] + t * (hi[i] - lo[i]) for i in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@dataclass
class GeometryOutput:
    """What a geometry says about a batch of points."""

    density: Float[Tensor, "N"]
    """Volume density (>= 0)."""
    features: Float[Tensor, "N C"]
    """Surface features, e.g. albedo in [0, 1] (C = 3)."""
    normal: Float[Tensor, "N 3"] | None = None
    """Unit outward normals, when requested."""


class BaseGeometry(Lift3DModule):
    """Any geometry over the scene box ``[-radius, radius]^3``."""

    radius: float = 1.0

    def features_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        """Surface features (e.g. albedo) at points; used by mesh renderers and the texture bake."""
        raise NotImplementedError


class BaseImplicitGeometry(BaseGeometry):
    """A density field over the scene box ``[-radius, radius]^3``."""

    def features_at(self, points: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        return self(points).features

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
        pts = cell_centres(lo, hi, resolution).reshape(-1, 3)
        device = next(self.parameters()).device
        out = [self.forward_density(p.to(device)) for p in pts.split(chunk)]
        return torch.cat(out).reshape(resolution, resolution, resolution)


class BaseExplicitGeometry(BaseGeometry):
    """A geometry that is a triangle mesh (e.g. DMTet), differentiable in its parameters."""

    def isosurface(self) -> "TriangleMesh":
        """The current surface mesh (a :class:`lift3d.geometry.triangle_mesh.TriangleMesh`)."""
        raise NotImplementedError
