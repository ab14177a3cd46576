"""``magic123-system``: image-to-3D with two priors at once (Magic123, Qian et al., 2023).

Zero-1-to-3's two passes (:mod:`lift3d.systems.zero123`): the reference pass pulls the render
of the input camera to the input image, the novel-view pass scores random views. Here the novel
views are scored by two priors, each with its own weight:

* ``sds``: the view-conditioned prior (3D prior: knows the object's other sides from the input);
* ``text_sds``: SDS from a text prior with the image's caption (2D prior: sharp, detailed views,
  no notion of the input's back side).

Either weight may be 0, and that prior is then not loaded: ``lambda_sds: 0`` is the
RealFusion-style baseline (reference losses + a text prior, without textual inversion), the one
that shows what a view-conditioned prior adds.

As Magic3D, two stages: ``coarse`` optimises a hash-grid NeRF, ``refine`` the same asset as a
DMTet mesh on the mesh renderer, started from the coarse trial (``geometry_convert_from``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lift3d.config import Scheduled, module_field
from lift3d.data.single_image import ImageConditionedBatch
from lift3d.registry import register
from lift3d.renderers.base import RenderOutput
from lift3d.systems.dreamfusion import _ever_positive
from lift3d.systems.magic3d import Magic3DSystem, MeshStageFields
from lift3d.systems.zero123 import Zero123System

TEXT_PREFIX = "text_"
"""Prefix of the text prior's losses (``lambda_text_sds``), which would otherwise share the view prior's names."""


def _default_losses() -> dict:
    return {"lambda_sds": 0.1, "lambda_text_sds": 0.05, "lambda_rgb": 500.0, "lambda_mask": 50.0}


@register("magic123-system")
class Magic123System(Zero123System, Magic3DSystem):
    """Reference losses + a view prior + a text prior; a NeRF (coarse) or a DMTet mesh (refine)."""

    regularizer_names = Zero123System.regularizer_names + ("normal_consistency", "laplacian_smoothness")

    @dataclass
    class Config(Zero123System.Config, MeshStageFields):
        prompt_processor_type: str = "diffusers-prompt-processor"
        """Registered prompt processor of the text prior."""
        prompt_processor: object = module_field("prompt_processor_type", "lift3d.prompts.base.BasePromptProcessor")
        """Config of the prompt processor (``prompt``: the input image's caption)."""
        text_guidance_type: str = "diffusers-sds-guidance"
        """Registered guidance of the text prior (its losses are named ``text_<name>``)."""
        text_guidance: object = module_field("text_guidance_type", "lift3d.guidance.base.BaseGuidance")
        """Config of the text prior's guidance."""
        loss: dict[str, Scheduled] = field(default_factory=_default_losses)
        """Weight ``lambda_<name>`` of each loss: sds (view prior), text_sds (text prior), rgb, mask, depth,
        normal_smooth, 3d_normal_smooth, orient, sparsity, opaque, and on the mesh stage
        normal_consistency and laplacian_smoothness. 0 skips a loss's work (and an unused prior is not loaded)."""

    @classmethod
    def text_guidance_class(cls, cfg) -> type:
        from lift3d.guidance.base import BaseGuidance
        from lift3d.registry import find

        return find(cfg.text_guidance_type, BaseGuidance)

    @classmethod
    def text_loss_names(cls, cfg) -> tuple[str, ...]:
        """The text prior's losses as this system names them (``text_sds``)."""
        return tuple(TEXT_PREFIX + name for name in cls.text_guidance_class(cfg).loss_names)

    @classmethod
    def uses_text_prior(cls, cfg) -> bool:
        return any(_ever_positive(cfg.loss.get(f"lambda_{name}", 0.0)) for name in cls.text_loss_names(cfg))

    @classmethod
    def produced_losses(cls, cfg) -> tuple[str, ...]:
        return super().produced_losses(cfg) + cls.text_loss_names(cfg)

    @classmethod
    def config_errors(cls, cfg, path: str) -> list[str]:
        errors = super().config_errors(cfg, path)
        if not (_ever_positive(cfg.loss.get("lambda_sds", 0.0)) or cls.uses_text_prior(cfg)):
            errors.append(f"{path}.loss: both priors are switched off (lambda_sds and lambda_text_sds are 0); "
                          "give one of them a weight, or use zero123-system with lambda_sds=0 for the reference-only baseline")
        if getattr(cls.text_guidance_class(cfg), "trainable_modules", ()):
            errors.append(f"{path}.text_guidance_type: {cfg.text_guidance_type!r} trains modules of its own, which "
                          f"magic123-system does not optimise; use diffusers-sds-guidance")
        return errors

    def build_guidance(self, cfg) -> None:
        """Each prior only when one of its losses is weighted above 0 at some step."""
        self.guidance = self.prompt_processor = self.text_guidance = None
        self.text_losses = self.text_loss_names(cfg)  # looked up once, not on every training step
        if _ever_positive(cfg.loss.get("lambda_sds", 0.0)):
            super().build_guidance(cfg)
        if self.uses_text_prior(cfg):
            self.prompt_processor = self.build("lift3d.prompts.base.BasePromptProcessor", cfg.prompt_processor_type, cfg.prompt_processor)
            self.text_guidance = self.build("lift3d.guidance.base.BaseGuidance", cfg.text_guidance_type, cfg.text_guidance)

    def display(self, rgb):
        guidance = self.guidance if self.guidance is not None else self.text_guidance
        return guidance.to_display(rgb)

    def novel_view_losses(self, batch: ImageConditionedBatch) -> tuple[dict, dict, RenderOutput]:
        losses, info, out = super().novel_view_losses(batch)
        if self.text_guidance is not None and any(self.loss_weight(n) > 0 for n in self.text_losses):
            text_out = self.text_guidance(out.comp_rgb, self.prompt_processor.embeddings, batch.random)
            losses.update({TEXT_PREFIX + k: v for k, v in text_out.losses.items()})
            info.update({TEXT_PREFIX + k: v for k, v in text_out.info.items()})
        return losses, info, out
