"""Interface of guidance modules: named losses from renders and prompt embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxtyping import Float
from torch import Tensor

from lift3d.data.batch import CameraBatch
from lift3d.module import Lift3DModule
from lift3d.prompts.base import PromptEmbeddings


@dataclass
class GuidanceOutput:
    """Losses (to be weighted by the system's ``lambda_<name>``) and values to log."""

    losses: dict[str, Tensor]
    info: dict[str, float] = field(default_factory=dict)


class BaseGuidance(Lift3DModule):
    loss_names: tuple[str, ...] = ()
    """Names of the losses this guidance produces; the system accepts ``lambda_<name>`` for each."""

    def forward(self, rgb: Float[Tensor, "B H W 3"], prompt: PromptEmbeddings, batch: CameraBatch) -> GuidanceOutput:
        raise NotImplementedError
