"""Interface of renderers and the typed render output."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from lift3d.backgrounds.base import BaseBackground
from lift3d.data.batch import CameraBatch
from lift3d.geometry.base import BaseGeometry, BaseImplicitGeometry
from lift3d.materials.base import BaseMaterial
from lift3d.module import Lift3DModule


@dataclass
class RenderOutput:
    """Images of a batch of B cameras at H x W: colours in [0, 1] (C = 3), or C feature channels
    (e.g. a latent prior's 4 latent channels when rendering its latent space directly)."""

    comp_rgb: Float[Tensor, "B H W C"]
    """Composited colour (or features) over the background."""
    comp_rgb_bg: Float[Tensor, "B H W C"]
    """Background colour (or features) along each ray."""
    opacity: Float[Tensor, "B H W 1"]
    """Accumulated opacity."""
    depth: Float[Tensor, "B H W 1"]
    """Expected ray distance (0 where empty)."""
    comp_normal: Float[Tensor, "B H W 3"] | None = None
    """Accumulated world-space normal, when normals were computed."""
    orient: Float[Tensor, "B H W"] | None = None
    """Per ray: sum of weight * max(0, n . d)^2 (normals facing away from the camera), for the orientation loss."""
    samples_evaluated: int = 0
    """Sample points at which the geometry was evaluated."""
    samples_total: int = 0
    """Sample points before empty-space skipping."""
    sample_weights: Float[Tensor, "S"] | None = None
    """Compositing weight of every evaluated sample (volume renderers), for losses on the weights (SJC's emptiness)."""
    mesh: object | None = None
    """The rendered :class:`~lift3d.geometry.triangle_mesh.TriangleMesh` (mesh renderers), for mesh regularizers."""


class BaseRenderer(Lift3DModule):
    """Renders geometry + material + background for a camera batch."""

    geometry_class: type = BaseImplicitGeometry
    """The kind of geometry this renderer can draw (a density field for ray marching, a mesh for rasterizing)."""

    def __init__(self, cfg, geometry: BaseGeometry, material: BaseMaterial, background: BaseBackground) -> None:
        super().__init__(cfg)
        self.geometry = geometry
        self.material = material
        self.background = background

    def forward(self, batch: CameraBatch, need_normal: bool = False) -> RenderOutput:
        raise NotImplementedError
