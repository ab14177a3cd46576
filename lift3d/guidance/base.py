"""Interfaces of guidance modules: named losses from renders, and prompt embeddings or a reference view."""

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
    trainable_modules: tuple[str, ...] = ()
    """Submodules the system's optimizer trains alongside the scene (VSD's LoRA), as named under
    ``guidance.``; they are saved in checkpoints. The prior itself is frozen and never saved."""

    def forward(self, rgb: Float[Tensor, "B H W C"], prompt: PromptEmbeddings, batch: CameraBatch) -> GuidanceOutput:
        raise NotImplementedError

    def to_display(self, render: Float[Tensor, "B H W C"]) -> Float[Tensor, "B H W 3"]:
        """Colours in [0, 1] to save of a render (a guidance scoring latent renders decodes them)."""
        return render


class BaseViewGuidance(Lift3DModule):
    """Guidance by a view-conditioned prior (image-to-3D): given the reference view once, it scores
    renders from other cameras."""

    loss_names: tuple[str, ...] = ()

    def set_reference(self, rgb: Float[Tensor, "1 H W 3"], camera: CameraBatch) -> None:
        """The input image (colours in [0, 1] on its background) and the camera it was taken from."""
        raise NotImplementedError

    def forward(self, rgb: Float[Tensor, "B H W 3"], batch: CameraBatch) -> GuidanceOutput:
        raise NotImplementedError

    def to_display(self, render: Float[Tensor, "B H W C"]) -> Float[Tensor, "B H W 3"]:
        """Colours in [0, 1] to save of a render."""
        return render
