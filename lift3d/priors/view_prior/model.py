"""Components of the bundled view-conditioned (Zero-1-to-3 style) prior.

Layout follows the diffusers ports of Zero123 (``unet/``, ``image_encoder/``,
``cc_projection/``, ``feature_extractor/``, ``scheduler/``, and ``vae/`` for a latent model):

- the UNet's input is the noisy target view concatenated with the reference view
  (pixels here; latents in a real Zero123), so ``in_channels`` is twice the image channels;
- its cross-attention context is one token: the reference view's CLIP image embedding joined
  with the relative camera ``(Δelevation, sin Δazimuth, cos Δazimuth, Δdistance)`` and mapped
  back to the embedding width by ``cc_projection``;
- the unconditional branch (for classifier-free guidance) zeroes the context and, as Zero123
  does, the concatenated reference view; a prior trained with context-only dropout keeps the
  reference there (``CCProjection.config.unconditional_keeps_reference``).

Angles of the relative camera are in radians, Δ = target − reference. (Zero123 writes the
first entry as Δpolar = −Δelevation; a converted real checkpoint flips that sign in its loader.)
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from jaxtyping import Float
from torch import Tensor
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection


from lift3d.priors.text_prior.model import TEXT_WIDTH
from lift3d.priors.text_prior.model import build_unet as build_text_prior_unet
from lift3d.priors.world import conventions as conv

__all__ = ["CCProjection", "build_unet", "build_image_encoder", "build_feature_extractor", "build_scheduler",
           "relative_camera", "clip_normalize", "view_context"]

EMBED_WIDTH = TEXT_WIDTH
"""Width of the image embedding and of the UNet's cross-attention context (the text prior's)."""
CAMERA_FEATURES = 4
"""(Δelevation, sin Δazimuth, cos Δazimuth, Δdistance)."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CCProjection(ModelMixin, ConfigMixin):
    """Joins image embedding and relative camera into the UNet's context (``cc_projection/``).

    ``unconditional_keeps_reference`` records how the prior was trained for classifier-free
    guidance: False (Zero123's convention, and converted checkpoints) means the unconditional
    branch zeroes both the context and the concatenated reference; True means training dropped
    only the context token, so the unconditional branch still sees the reference view.
    ``camera_convention`` names how the relative camera is written
    (:mod:`lift3d.guidance.relative_camera`): ``lift3d`` for the bundled prior, ``zero123`` or
    ``stable-zero123`` for converted checkpoints.
    """

    @register_to_config
    def __init__(
        self,
        in_channel: int = EMBED_WIDTH + CAMERA_FEATURES,
        out_channel: int = EMBED_WIDTH,
        unconditional_keeps_reference: bool = False,
        camera_convention: str = "lift3d",
    ) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(in_channel, out_channel)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x)


def build_unet(resolution: int = conv.RESOLUTION) -> UNet2DConditionModel:
    """The text prior's UNet with the reference view concatenated to its input; context width ``EMBED_WIDTH``."""
    return build_text_prior_unet(resolution, in_channels=6)


def build_scheduler(prediction_type: str = "sample") -> DDPMScheduler:
    """The bundled view prior's noise schedule; it predicts x0 (``sample``) since 2026-11-28.

    With ε-prediction the high-noise steps, the only ones where the reference view carries
    information the noisy target lacks, weigh almost nothing in the loss, and the prior learnt
    to ignore its reference (see the model card).
    """
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)


def build_image_encoder(resolution: int = conv.RESOLUTION) -> CLIPVisionModelWithProjection:
    cfg = CLIPVisionConfig(
        image_size=resolution,
        patch_size=4,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=EMBED_WIDTH,
    )
    return CLIPVisionModelWithProjection(cfg)


def build_feature_extractor(resolution: int = conv.RESOLUTION) -> CLIPImageProcessor:
    """Preprocessing of the reference view for the image encoder (saved for layout parity)."""
    return CLIPImageProcessor(
        size={"shortest_edge": resolution},
        crop_size={"height": resolution, "width": resolution},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def relative_camera(
    ref_elevation: Float[Tensor, "B"],
    ref_azimuth: Float[Tensor, "B"],
    ref_distance: Float[Tensor, "B"],
    elevation: Float[Tensor, "B"],
    azimuth: Float[Tensor, "B"],
    distance: Float[Tensor, "B"],
) -> Float[Tensor, "B 4"]:
    """The camera features of target views relative to reference views (angles in degrees), in
    the bundled prior's ``lift3d`` convention."""
    from lift3d.guidance.relative_camera import relative_camera_features

    return relative_camera_features("lift3d", ref_elevation, ref_azimuth, ref_distance, elevation, azimuth, distance)


def clip_normalize(images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 3 H W"]:
    """Images in [0, 1] normalised as the feature extractor does (differentiable)."""
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def view_context(
    image_encoder: CLIPVisionModelWithProjection,
    cc_projection: CCProjection,
    reference: Float[Tensor, "B 3 H W"],
    camera: Float[Tensor, "B 4"],
) -> Float[Tensor, "B 1 D"]:
    """Cross-attention context of reference views in [0, 1] seen from relative cameras."""
    embeds = image_encoder(pixel_values=clip_normalize(reference)).image_embeds
    return cc_projection(torch.cat([embeds, camera.to(embeds.dtype)], dim=-1))[:, None, :]
