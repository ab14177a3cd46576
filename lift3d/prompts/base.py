"""Interface of prompt processors and the embeddings they hand to guidance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.module import Lift3DModule
from lift3d.prompts.view_dependent import ViewThresholds, view_index


@dataclass
class PromptEmbeddings:
    """Text embeddings of one prompt, plain and per view bucket (front, side, back, overhead)."""

    cond: Float[Tensor, "L D"]
    """Embedding of the prompt as given."""
    uncond: Float[Tensor, "L D"]
    """Embedding of the negative (by default empty) prompt, for classifier-free guidance."""
    views: Float[Tensor, "4 L D"]
    """Embeddings of the prompt with each view suffix, in ``VIEW_NAMES`` order."""
    thresholds: ViewThresholds
    """Thresholds that map cameras to view buckets."""
    view_dependent: bool = True
    """Use ``views`` for each camera instead of ``cond``."""

    def for_cameras(
        self, elevation: Float[Tensor, "B"], azimuth: Float[Tensor, "B"]
    ) -> tuple[Float[Tensor, "B L D"], Float[Tensor, "B L D"]]:
        """Conditional and unconditional embeddings for a batch of cameras."""
        b = elevation.shape[0]
        if self.view_dependent:
            cond = self.views.to(elevation.device)[view_index(elevation, azimuth, self.thresholds)]
        else:
            cond = self.cond.to(elevation.device)[None].expand(b, -1, -1)
        uncond = self.uncond.to(elevation.device)[None].expand(b, -1, -1)
        return cond, uncond


class BasePromptProcessor(Lift3DModule):
    """Turns the configured prompt into :class:`PromptEmbeddings` once, at construction."""

    embeddings: PromptEmbeddings
