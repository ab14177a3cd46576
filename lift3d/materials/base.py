"""Interface of materials: from surface features, normals and a light to a colour."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule


class BaseMaterial(Lift3DModule):
    """Turns geometry features into RGB at sample points."""

    requires_normal: bool = False
    """Whether ``forward`` needs normals."""

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
