"""Interface of backgrounds: the colour seen along rays that leave the scene."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule


class BaseBackground(Lift3DModule):
    n_output_dims: int = 3
    """Channels of the background (3: RGB)."""

    def forward(self, dirs: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W C"]:
        raise NotImplementedError
