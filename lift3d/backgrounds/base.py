"""Interface of backgrounds: the colour seen along rays that leave the scene."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule


class BaseBackground(Lift3DModule):
    def forward(self, dirs: Float[Tensor, "B H W 3"]) -> Float[Tensor, "B H W 3"]:
        raise NotImplementedError
