"""Interface of materials: from surface features, normals and a light to a colour."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule


class BaseMaterial(Lift3DModule):
    """Turns geometry features into RGB at sample points."""

    requires_normal: bool = False
    """Whether ``forward`` can use normals (a geometry without normals cannot serve it)."""

    def needs_normal_now(self) -> bool:
        """Whether the next ``forward`` uses normals; a training step that does not (albedo-only
        shading) skips building them, and with them the second-order graph of analytic normals."""
        return self.requires_normal

    def forward(
        self,
        features: Float[Tensor, "N C"],
        normal: Float[Tensor, "N 3"] | None,
        points: Float[Tensor, "N 3"],
        light_position: Float[Tensor, "N 3"],
    ) -> Float[Tensor, "N 3"]:
        raise NotImplementedError

    def albedo(self, features: Float[Tensor, "N C"]) -> Float[Tensor, "N 3"]:
        """Base colour, used when exporting textures."""
        return features[:, :3].clamp(0, 1)
